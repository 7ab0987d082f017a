"""The SCIM connector: partners that accept SCIM 2.0 (RFC 7643, RFC 7644) get the resident's
account provisioned, kept up to date, deactivated and deleted, through `scim2-client` (its
synchronous httpx2 engine) and `scim2-models`. docs/connectors/scim.md is the operators' and
partners' description.

Configuration of a `PartnerConnector` of kind "scim" (docs/operators.md):

- `config` (non-secret): `base_url` (required: the SCIM root, e.g. https://partner/scim/v2;
  https, or http on a loopback address for the simulator), `connect_timeout`,
  `read_timeout` (seconds, capped at `MAX_TIMEOUT`), `max_attempts` (outbox deliveries before
  a dead letter, default `DEFAULT_MAX_ATTEMPTS`);
- `secrets`: `bearer_token` (required), sent as `Authorization: Bearer <token>`.

The resident is the partner's User whose `externalId` is the `sub` the partner's client
receives in its ID tokens (connectors.subjects: pairwise per sector); `userName` is that `sub`
too (never the email address: the partner may not have been given it). The other attributes
are those the resident consented to share with the partner, from the claims the partner's
client receives (`user_resource`): name (scope profile), emails (email), phoneNumbers
(phone), addresses (address). Nothing else is sent.

The connector converges instead of replaying orders (`sync`): it looks the resident up by
`externalId` filter and creates (POST /Users), updates (PATCH replace, `active` true) or
deactivates (PATCH `active` false) accordingly, so a delivery repeated or delivered late
changes nothing more and a redelivery never creates a second user. Writes are conditional
(`If-Match` with the version just read) when the partner advertises ETags
(ServiceProviderConfig `etag.supported`); every request carries the outbox message's key in
`Idempotency-Key` for partners that honour it.

Failures, as the connector protocol's errors: no answer in time, connection refused, 5xx, 429,
412 (changed meanwhile), 401/403 (our token refused) → PartnerUnavailable (retried);
an answer that is not SCIM (garbage, wrong content type, invalid payload) →
PartnerProtocolError, retried too by the provisioning handler until `max_attempts`
(a proxy's error page is often transient), then dead-lettered with the reason; any other 4xx
(the partner refused our request) → ScimRefused, dead-lettered at once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connectors.protocol import (
    Connector,
    ConnectorConfigError,
    ConnectorError,
    ErasureOutcome,
    ErasureState,
    Health,
    LinkOutcome,
    ProvisionOutcome,
)
from connectors.registry import register
from connectors.scim_config import DEFAULT_MAX_ATTEMPTS, ScimConfig, scim_config

__all__ = ["DEFAULT_MAX_ATTEMPTS", "KIND", "ScimConnector", "SyncOutcome", "scim_config"]

if TYPE_CHECKING:
    from connectors.scim_wire import ScimClient

KIND = "scim"


@dataclass(frozen=True)
class SyncOutcome:
    """What `sync` did at the partner: created, updated, deactivated or nothing ("unchanged":
    not shared and never provisioned, or already deactivated); the partner's id and version."""

    action: str
    scim_id: str = ""
    version: str = ""


@register
class ScimConnector(Connector):
    kind = KIND
    config_keys = ("base_url", "connect_timeout", "read_timeout", "max_attempts")
    secret_keys = ("bearer_token",)
    links_accounts = False  # provisioned from consent: not offered on Cartes et abonnements

    @classmethod
    def check_config(cls, config: Mapping[str, Any], secrets: Mapping[str, str]) -> list[str]:
        problems = [f"unknown setting {key!r}" for key in config if key not in cls.config_keys]
        problems += [f"unknown secret {key!r}" for key in secrets if key not in cls.secret_keys]
        try:
            scim_config(config, secrets)
        except ConnectorConfigError as exc:
            problems.append(str(exc))
        return problems

    @property
    def settings(self) -> ScimConfig:
        return scim_config(self.config, self.secrets)

    def _client(self, idempotency_key: str = "") -> ScimClient:
        from connectors.scim_wire import ScimClient  # noqa: PLC0415 - loaded where SCIM is called

        return ScimClient(self.settings, idempotency_key=idempotency_key)

    def sync(
        self, subject: str, claims: Mapping[str, Any] | None, *, idempotency_key: str = ""
    ) -> SyncOutcome:
        """Make the partner's user match the resident's sharing now: `claims` the claims the
        partner may receive (the resident grants it), None when the resident does not (or no
        longer) share anything with it. Idempotent; see the module's docstring."""
        from connectors.scim_wire import _id, _version, up_to_date, user_resource  # noqa: PLC0415

        if not subject:
            raise ConnectorConfigError("no subject for this partner")
        with self._client(idempotency_key) as client:
            current = client.find(subject)
            if claims is None:
                if current is None or current.active is False:
                    return SyncOutcome("unchanged", _id(current), _version(current))
                client.deactivate(current)
                return SyncOutcome("deactivated", _id(current))
            desired = user_resource(subject, claims)
            if current is None:
                created = client.create(desired)
                return SyncOutcome("created", _id(created), _version(created))
            if up_to_date(current, desired):
                return SyncOutcome("unchanged", _id(current), _version(current))
            client.replace_attributes(current, desired)
            return SyncOutcome("updated", _id(current))

    # --- the connector protocol -------------------------------------------------------------

    def link(self, reference: str, secret: str) -> LinkOutcome:
        raise ConnectorConfigError("a SCIM partner has no account to link: it is provisioned from consent")

    def refresh(self, reference: str) -> LinkOutcome:
        raise ConnectorConfigError("a SCIM partner has no linked account to refresh")

    def provision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        return ProvisionOutcome(
            False, "SCIM accounts follow the resident's consent (connectors.scim_provisioning)"
        )

    def deprovision(self, reference: str, *, idempotency_key: str) -> ProvisionOutcome:
        return ProvisionOutcome(
            False, "SCIM accounts follow the resident's consent (connectors.scim_provisioning)"
        )

    def export(self, reference: str | None, *, subject: str = "") -> dict[str, Any]:
        """The partner's user of this resident, as the partner answers it ({} if none)."""
        if not subject:
            return {}
        with self._client() as client:
            current = client.find(subject)
        if current is None:
            return {}
        return {"user": current.model_dump(scim_ctx=None, by_alias=True, exclude_none=True, mode="json")}

    def erase(self, reference: str | None, *, subject: str = "", idempotency_key: str) -> ErasureOutcome:
        if not subject:
            return ErasureOutcome(ErasureState.NOT_SUPPORTED, "no subject: the partner cannot be asked")
        with self._client(idempotency_key) as client:
            current = client.find(subject)
            if current is None:
                return ErasureOutcome(ErasureState.ERASED, "the partner holds no user for the resident")
            deleted = client.delete(current)
        return ErasureOutcome(
            ErasureState.ERASED,
            "the partner deleted the user" if deleted else "the partner holds no user for the resident",
        )

    def health(self) -> Health:
        try:
            with self._client() as client:
                client.service_config()
        except ConnectorError as exc:
            return Health(False, exc.code)
        return Health(True, "ServiceProviderConfig answered")
