"""The SCIM 2.0 wire of the `scim` connector kind (connectors/scim.py): the resources
(scim2-models), the client (scim2-client over httpx2) and their errors mapped to the connector
protocol's. Imported only where a SCIM partner is called (the outbox worker, the admin's
health check), so that web workers do not load these libraries (~27 MiB) for nothing."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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

from connectors.protocol import PartnerProtocolError, PartnerUnavailable
from connectors.scim_config import USER_AGENT, ScimConfig, ScimRefused


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


def _id(user: User[Any] | None) -> str:
    return str(user.id or "") if user is not None else ""


def _version(user: User[Any] | None) -> str:
    return str(user.meta.version or "") if user is not None and user.meta is not None else ""
