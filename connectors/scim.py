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

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, cast

import httpx2
from scim2_client import SCIMClientException
from scim2_client.engines.httpx2 import SyncSCIMClient
from scim2_client.errors import RequestNetworkException, SCIMResponseException
from scim2_models import (
    Address,
    Email,
    ListResponse,
    Name,
    PatchOp,
    PhoneNumber,
    SCIMException,
    ScimProvider,
    SearchRequest,
    ServiceProviderConfig,
    User,
)

from connectors.http_contract import checked_base_url, timeout_setting
from connectors.protocol import (
    Connector,
    ConnectorConfigError,
    ConnectorError,
    ErasureOutcome,
    ErasureState,
    Health,
    LinkOutcome,
    PartnerProtocolError,
    PartnerUnavailable,
    ProvisionOutcome,
)
from connectors.registry import register

KIND = "scim"
MAX_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 10
MAX_MAX_ATTEMPTS = 30
USER_AGENT = "compte-unique-metropolitain/1 (scim connector)"


class ScimRefused(ConnectorError):
    """The partner refused our request for good (a 4xx other than 401, 403, 412, 429)."""

    code = "partner_refused"


@dataclass(frozen=True)
class ScimConfig:
    base_url: str
    bearer_token: str
    connect_timeout: float
    read_timeout: float
    max_attempts: int


def _max_attempts(config: Mapping[str, Any]) -> int:
    value = config.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MAX_ATTEMPTS:
        raise ConnectorConfigError(f"max_attempts must be a whole number from 1 to {MAX_MAX_ATTEMPTS}")
    return value


def scim_config(config: Mapping[str, Any], secrets: Mapping[str, str]) -> ScimConfig:
    """The client's settings (ConnectorConfigError if unusable)."""
    base_url = checked_base_url(config)
    token = secrets.get("bearer_token") or ""
    if not token:
        raise ConnectorConfigError("the bearer_token secret is required")
    return ScimConfig(
        base_url=base_url,
        bearer_token=token,
        connect_timeout=timeout_setting(config, "connect_timeout", maximum=MAX_TIMEOUT),
        read_timeout=timeout_setting(config, "read_timeout", maximum=MAX_TIMEOUT),
        max_attempts=_max_attempts(config),
    )


def user_resource(subject: str, claims: Mapping[str, Any], *, active: bool = True) -> User[Any]:
    """The partner's User for a resident: `externalId` and `userName` the partner's `sub`, and
    the claims the resident lets the partner receive (as identity.oidc releases them), mapped
    to SCIM's core attributes. A claim absent is an attribute absent."""
    name = None
    if claims.get("given_name") or claims.get("family_name"):
        name = Name(
            given_name=claims.get("given_name") or None,
            family_name=claims.get("family_name") or None,
            formatted=claims.get("name") or None,
        )
    emails = (
        [Email(value=claims["email"], primary=True, type=Email.Type.home)] if claims.get("email") else None
    )
    phones = (
        [PhoneNumber(value=claims["phone_number"], primary=True, type=PhoneNumber.Type.mobile)]
        if claims.get("phone_number")
        else None
    )
    address = claims.get("address")
    addresses = None
    if isinstance(address, Mapping):
        addresses = [
            Address(
                street_address=address.get("street_address") or None,
                locality=address.get("locality") or None,
                postal_code=address.get("postal_code") or None,
                country=address.get("country") or None,
                formatted=address.get("formatted") or None,
                primary=True,
                type=Address.Type.home,
            )
        ]
    return User(
        user_name=subject,
        external_id=subject,
        display_name=claims.get("name") or None,
        name=name,
        emails=emails,
        phone_numbers=phones,
        addresses=addresses,
        active=active,
    )


# The attributes `sync` replaces (an attribute the resident no longer shares is removed).
_REPLACED = ("name", "displayName", "emails", "phoneNumbers", "addresses")


def _shared_view(user: User[Any]) -> dict[str, Any]:
    values = user.model_dump(scim_ctx=None, by_alias=True, exclude_none=True, mode="json")
    return {key: values.get(key) for key in (*_REPLACED, "active")}


def up_to_date(current: User[Any], desired: User[Any]) -> bool:
    """Does the partner's user already hold exactly what we would send?"""
    return _shared_view(current) == _shared_view(desired)


def _patch(current: User[Any], desired: User[Any]) -> PatchOp[User[Any]]:
    """Replace what the resident shares, remove what they no longer share (a complex attribute
    is removed first, so no sub-attribute of an older value survives a replace)."""
    values = desired.model_dump(scim_ctx=None, by_alias=True, exclude_none=True)
    held = current.model_dump(scim_ctx=None, by_alias=True, exclude_none=True)
    operations: list[dict[str, Any]] = [{"op": "replace", "path": "active", "value": bool(desired.active)}]
    for attribute in _REPLACED:
        if attribute in held:
            operations.append({"op": "remove", "path": attribute})
        if attribute in values:
            operations.append({"op": "add", "path": attribute, "value": values[attribute]})
    return _patch_op(operations)


def _patch_op(operations: list[dict[str, Any]]) -> PatchOp[User[Any]]:
    return PatchOp[User[Any]].model_validate({"Operations": operations})


@contextmanager
def _errors() -> Iterator[None]:
    """scim2-client's exceptions → the connector protocol's errors."""
    try:
        yield
    except RequestNetworkException as exc:
        cause = exc.__cause__
        if isinstance(cause, httpx2.TimeoutException):
            raise PartnerUnavailable("timeout", code="partner_timeout") from None
        raise PartnerUnavailable(type(cause or exc).__name__) from None
    except SCIMResponseException as exc:
        status = getattr(exc.source, "status_code", None)
        if isinstance(status, int) and (status >= 500 or status == 429):
            raise PartnerUnavailable(f"HTTP {status}") from None
        raise PartnerProtocolError(f"not a SCIM answer: {type(exc).__name__}") from None
    except SCIMException as exc:
        _raise_for_status(int(getattr(exc, "status", 0) or 0), type(exc).__name__)
    except SCIMClientException as exc:
        raise PartnerProtocolError(type(exc).__name__) from None
    except (ValueError, TypeError) as exc:  # pydantic's ValidationError is a ValueError
        raise PartnerProtocolError(f"invalid SCIM payload: {type(exc).__name__}") from None


def _raise_for_status(status: int, name: str) -> None:
    if status in {401, 403}:
        raise PartnerUnavailable("our bearer token was refused", code="partner_login_refused")
    if status == 412:
        raise PartnerUnavailable("the user changed meanwhile (412)", code="partner_conflict")
    if status == 429 or status >= 500:
        raise PartnerUnavailable(f"HTTP {status}")
    raise ScimRefused(f"the partner refused: HTTP {status} {name}")


class ScimClient:
    """One partner's SCIM service: a scim2-client over an httpx2 client (no redirects, the
    connector's timeouts, our bearer token), the service's configuration read once."""

    def __init__(self, config: ScimConfig, *, idempotency_key: str = "") -> None:
        headers = {"Authorization": f"Bearer {config.bearer_token}", "User-Agent": USER_AGENT}
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        self.http = httpx2.Client(
            base_url=config.base_url,
            headers=headers,
            timeout=httpx2.Timeout(config.read_timeout, connect=config.connect_timeout),
            follow_redirects=False,
        )
        self.scim = SyncSCIMClient(self.http, provider=ScimProvider(models=[User]))

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ScimClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def service_config(self) -> ServiceProviderConfig:
        with _errors():
            self.scim.discover(schemas=False, resource_types=False)
            config = self.scim.provider.config
        if config is None:
            raise PartnerProtocolError("no ServiceProviderConfig")
        return config

    def find(self, subject: str) -> User[Any] | None:
        """The partner's user whose externalId is `subject` (None: none)."""
        self.service_config()  # ETag support, before any conditional write
        quoted = subject.replace("\\", "\\\\").replace('"', '\\"')
        with _errors():
            search: SearchRequest[Any] = SearchRequest.model_validate({"filter": f'externalId eq "{quoted}"'})
            answer = cast("Any", self.scim).query(User, query_parameters=search)
        if not isinstance(answer, ListResponse):
            raise PartnerProtocolError("the search did not answer a ListResponse")
        found = [item for item in answer.resources or [] if getattr(item, "external_id", None) == subject]
        if len(found) > 1:
            raise PartnerProtocolError("several users have this externalId")
        return cast("User[Any]", found[0]) if found else None

    def create(self, desired: User[Any]) -> User[Any]:
        with _errors():
            created = self.scim.create(desired)
        if not isinstance(created, User) or not created.id:
            raise PartnerProtocolError("the creation answered no user id")
        return created

    def replace_attributes(self, current: User[Any], desired: User[Any]) -> None:
        self._modify(current, _patch(current, desired))

    def deactivate(self, current: User[Any]) -> None:
        self._modify(current, _patch_op([{"op": "replace", "path": "active", "value": False}]))

    def _modify(self, current: User[Any], operation: PatchOp[User[Any]]) -> None:
        """PATCH; a user deleted at the partner since it was read (404) is retried: the next
        delivery reads again and creates it if it is still to be provisioned."""
        with _errors():
            try:
                self.scim.modify(current, operation)
            except SCIMException as exc:
                if int(getattr(exc, "status", 0) or 0) == 404:
                    raise PartnerUnavailable(
                        "the user vanished meanwhile (404)", code="partner_conflict"
                    ) from None
                raise

    def delete(self, current: User[Any]) -> bool:
        """False: the partner no longer had it (404)."""
        with _errors():
            try:
                self.scim.delete(User, cast("str", current.id))
            except SCIMException as exc:
                if int(getattr(exc, "status", 0) or 0) == 404:
                    return False
                raise
        return True


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
        return ScimClient(self.settings, idempotency_key=idempotency_key)

    def sync(
        self, subject: str, claims: Mapping[str, Any] | None, *, idempotency_key: str = ""
    ) -> SyncOutcome:
        """Make the partner's user match the resident's sharing now: `claims` the claims the
        partner may receive (the resident grants it), None when the resident does not (or no
        longer) share anything with it. Idempotent; see the module's docstring."""
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


def _id(user: User[Any] | None) -> str:
    return str(user.id or "") if user is not None else ""


def _version(user: User[Any] | None) -> str:
    return str(user.meta.version or "") if user is not None and user.meta is not None else ""
