"""Registration of partner clients (the `register_client` command, the demo data, the tests).

The configuration rules are those of identity.oidc.client_checks, shared with the staff
pages (identity.oidc.admin) and `Client.clean`; this service adds the defaults, the name, the
sector and the uniqueness of a resource identifier.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.utils import translation
from oauth2_provider.models import get_application_model

from common.crypto import generate_secret, keyed_hash
from identity.audit import audit_log
from identity.models import User
from identity.oidc.client_checks import client_config_check
from identity.oidc.client_uris import ClientConfigError
from identity.oidc.constants import GRANT_AUTHORIZATION_CODE
from identity.oidc.resources import resource_identifier_check
from identity.oidc.subjects import SectorError, sector_for


@transaction.atomic
def client_register(
    *,
    name: str,
    redirect_uris: list[str],
    grant_types: list[str],
    scopes: list[str] | None = None,
    public: bool = False,
    post_logout_redirect_uris: list[str] | None = None,
    backchannel_logout_uri: str = "",
    is_internal: bool = False,
    is_resource_server: bool = False,
    skip_authorization: bool = False,
    acting_user: User | None = None,
    sector_identifier_uri: str = "",
    signing_alg: str = "ES256",
    frontchannel_logout_uri: str = "",
    backchannel_logout_session_required: bool = False,
    frontchannel_logout_session_required: bool = False,
    token_endpoint_auth_method: str | None = None,
    jwks: dict[str, Any] | None = None,
    jwks_uri: str = "",
    require_par: bool = False,
    require_mfa: bool = False,
    logo_uri: str = "",
    policy_uri: str = "",
    resource_identifier: str = "",
    allowed_origins: list[str] | None = None,
    require_dpop: bool = False,
) -> tuple[Any, str | None]:
    """Register a partner client. Returns the client and its secret (None when it has none).

    The secret is shown once: only its keyed hash is stored. The pairwise-subject sector
    is fixed here (identity/oidc/subjects.py): the sector identifier URI's host, else the
    one host all redirect URIs share (several hosts without a sector are refused).
    `token_endpoint_auth_method` defaults to `client_secret_basic` (`none` for public
    clients); `private_key_jwt` needs the client's public keys (`jwks` or `jwks_uri`) and
    gets no secret at all. `resource_identifier` (RFC 8707, unique) makes the client a
    resource server that tokens can be meant for (identity/oidc/resources.py).
    `signing_alg` (the ID tokens' and logout tokens') is ES256 unless the partner asks for
    RS256; clients registered before this default keep what they have.
    `require_dpop` (RFC 9449 `dpop_bound_access_tokens`): every token request of the client
    must carry a DPoP proof, so all its tokens are bound to its key.
    """

    name = (name or "").strip()
    if not name:
        raise ClientConfigError("a client name is required", field="name")
    grant_types = list(dict.fromkeys(grant_types or [GRANT_AUTHORIZATION_CODE]))
    scopes = list(dict.fromkeys(scopes or ["openid", "profile", "email"]))
    redirect_uris = list(redirect_uris or [])
    post_logout = list(post_logout_redirect_uris or [])
    method = token_endpoint_auth_method or ("none" if public else "client_secret_basic")
    with translation.override("en"):  # ClientConfigError speaks to operators (register_client)
        client_config_check(
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=post_logout,
            grant_types=grant_types,
            scopes=scopes,
            public=public,
            auth_method=method,
            signing_alg=signing_alg,
            is_internal=is_internal,
            backchannel_logout_uri=backchannel_logout_uri,
            frontchannel_logout_uri=frontchannel_logout_uri,
            sector_identifier_uri=sector_identifier_uri,
            jwks=jwks,
            jwks_uri=jwks_uri,
            logo_uri=logo_uri,
            policy_uri=policy_uri,
            resource_identifier=resource_identifier,
            allowed_origins=list(allowed_origins or []),
        )

    try:
        sector = sector_for(redirect_uris=redirect_uris, sector_identifier_uri=sector_identifier_uri)
    except SectorError as exc:
        if not is_internal or sector_identifier_uri:  # internal services get the public subject
            raise ClientConfigError(str(exc), field="sector_identifier_uri") from exc
        sector = ""

    Client = get_application_model()
    if resource_identifier:
        resource_identifier = resource_identifier_check(resource_identifier)  # checked: normalises
        if Client.objects.filter(resource_identifier=resource_identifier).exists():
            message = f"resource identifier {resource_identifier!r} is already registered"
            raise ClientConfigError(message, field="resource_identifier")
    secret = None if method in ("none", "private_key_jwt") else generate_secret()
    client = Client(
        name=name,
        client_type=Client.CLIENT_PUBLIC if public else Client.CLIENT_CONFIDENTIAL,
        authorization_grant_type=grant_types[0].replace("_", "-"),
        grant_types=" ".join(grant_types),
        allowed_scopes=" ".join(scopes),
        redirect_uris=" ".join(redirect_uris),
        post_logout_redirect_uris=" ".join(post_logout),
        backchannel_logout_uri=backchannel_logout_uri,
        backchannel_logout_session_required=backchannel_logout_session_required,
        frontchannel_logout_uri=frontchannel_logout_uri,
        frontchannel_logout_session_required=frontchannel_logout_session_required,
        sector_identifier_uri=sector_identifier_uri,
        is_internal=is_internal,
        is_resource_server=is_resource_server,
        skip_authorization=skip_authorization,
        client_secret=keyed_hash(secret) if secret else "",
        algorithm=signing_alg,
        token_endpoint_auth_method=method,
        jwks=jwks or None,
        jwks_uri=jwks_uri,
        require_par=require_par,
        require_mfa=require_mfa,
        logo_uri=logo_uri,
        policy_uri=policy_uri,
        resource_identifier=resource_identifier or None,
        allowed_origins=" ".join(dict.fromkeys(allowed_origins or [])),
        dpop_bound_access_tokens=require_dpop,
    )
    # A client without redirect URIs (client credentials only) is a sector of its own.
    client.subject_sector = sector or f"client:{client.client_id}"
    client.save()
    audit_log(event="client.registered", acting_user=acting_user, client_id=client.client_id)
    return client, secret
