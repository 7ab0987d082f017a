"""Registration of partner clients (the `register_client` command, the demo data, the tests).

The staff pages (identity.oidc.admin) check a client's URIs with the same function
(identity.oidc.client_uris.validate_client_uri) but keep their own copy of the other rules.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from common.crypto import generate_secret, keyed_hash
from identity.audit import audit_log
from identity.models import User
from identity.oidc.claims import supported_scopes
from identity.oidc.client_uris import ClientConfigError, validate_client_uri


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
    signing_alg: str = "RS256",
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
) -> tuple[Any, str | None]:
    """Register a partner client. Returns the client and its secret (None when it has none).

    The secret is shown once: only its keyed hash is stored. The pairwise-subject sector
    is fixed here (identity/oidc/subjects.py): the sector identifier URI's host, else the
    one host all redirect URIs share (several hosts without a sector are refused).
    `token_endpoint_auth_method` defaults to `client_secret_basic` (`none` for public
    clients); `private_key_jwt` needs the client's public keys (`jwks` or `jwks_uri`) and
    gets no secret at all. `resource_identifier` (RFC 8707, unique) makes the client a
    resource server that tokens can be meant for (identity/oidc/resources.py).
    """
    from oauth2_provider.models import get_application_model

    from identity.oidc.constants import GRANT_AUTHORIZATION_CODE, REGISTRABLE_GRANTS

    name = (name or "").strip()
    if not name:
        raise ClientConfigError("a client name is required")
    grant_types = list(dict.fromkeys(grant_types or [GRANT_AUTHORIZATION_CODE]))
    for grant in grant_types:
        if grant not in REGISTRABLE_GRANTS:
            raise ClientConfigError(f"unknown grant {grant!r} (choose from {', '.join(REGISTRABLE_GRANTS)})")
    if public and "client_credentials" in grant_types:
        raise ClientConfigError("a public client cannot use the client_credentials grant")
    scopes = list(dict.fromkeys(scopes or ["openid", "profile", "email"]))
    for scope in scopes:
        if scope not in supported_scopes():
            raise ClientConfigError(f"unknown scope {scope!r} (choose from {', '.join(supported_scopes())})")
    redirect_uris = [validate_client_uri(uri, what="redirect URI") for uri in redirect_uris or []]
    if GRANT_AUTHORIZATION_CODE in grant_types and not redirect_uris:
        raise ClientConfigError("the authorization_code grant needs at least one redirect URI")
    post_logout = [
        validate_client_uri(uri, what="post-logout redirect URI") for uri in post_logout_redirect_uris or []
    ]
    if backchannel_logout_uri:
        validate_client_uri(backchannel_logout_uri, what="back-channel logout URI")
    if frontchannel_logout_uri:
        validate_client_uri(frontchannel_logout_uri, what="front-channel logout URI")
    if signing_alg not in ("RS256", "ES256"):
        raise ClientConfigError(f"unknown signing algorithm {signing_alg!r} (choose from RS256, ES256)")
    from identity.oidc.subjects import SectorError, sector_for

    if sector_identifier_uri:
        validate_client_uri(sector_identifier_uri, what="sector identifier URI")
    try:
        sector = sector_for(redirect_uris=redirect_uris, sector_identifier_uri=sector_identifier_uri)
    except SectorError as exc:
        if not is_internal or sector_identifier_uri:  # internal services get the public subject
            raise ClientConfigError(str(exc)) from exc
        sector = ""

    method = token_endpoint_auth_method or ("none" if public else "client_secret_basic")
    from identity.oidc.constants import AUTH_METHODS

    if method not in AUTH_METHODS:
        raise ClientConfigError(f"unknown auth method {method!r} (choose from {', '.join(AUTH_METHODS)})")
    if public != (method == "none"):
        raise ClientConfigError("public clients, and only they, use the auth method 'none'")
    if method == "private_key_jwt":
        if bool(jwks) == bool(jwks_uri):
            raise ClientConfigError("private_key_jwt needs the client's keys: a JWKS or a JWKS URI (one)")
    elif jwks or jwks_uri:
        raise ClientConfigError("a JWKS or JWKS URI only applies to the private_key_jwt auth method")
    if jwks_uri:
        validate_client_uri(jwks_uri, what="JWKS URI")
    if logo_uri:
        validate_client_uri(logo_uri, what="logo URI")
    if policy_uri:
        validate_client_uri(policy_uri, what="privacy policy URI")
    if jwks:
        from identity.oidc.client_auth import validate_jwks_document

        try:
            validate_jwks_document(jwks)
        except ValueError as exc:
            raise ClientConfigError(f"JWKS: {exc}") from exc

    Client = get_application_model()
    if resource_identifier:
        from identity.oidc.resources import ResourceIdentifierError, resource_identifier_check

        try:
            resource_identifier = resource_identifier_check(resource_identifier)
        except ResourceIdentifierError as exc:
            raise ClientConfigError(str(exc)) from exc
        if Client.objects.filter(resource_identifier=resource_identifier).exists():
            raise ClientConfigError(f"resource identifier {resource_identifier!r} is already registered")
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
    )
    # A client without redirect URIs (client credentials only) is a sector of its own.
    client.subject_sector = sector or f"client:{client.client_id}"
    client.save()
    audit_log(event="client.registered", acting_user=acting_user, client_id=client.client_id)
    return client, secret
