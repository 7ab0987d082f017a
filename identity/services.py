"""Writes of the identity app. Keyword-only, one transaction each, audit in the same transaction."""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from django.conf import settings
from django.contrib.auth import login as django_login
from django.contrib.auth.password_validation import validate_password
from django.db import transaction
from django.http import HttpRequest

from identity.models import AuditEvent, User, normalize_email

SESSION_AUTH_TIME = "cum_auth_time"
SESSION_AMR = "cum_amr"


def ip_fingerprint(ip: str) -> str:
    """Keyed hash of a client IP: lets audits correlate events without storing the address."""
    if not ip:
        return ""
    key = hashlib.sha256(("ip:" + settings.SECRET_KEY).encode()).digest()
    return hmac.new(key, ip.encode(), hashlib.sha256).hexdigest()[:32]


def audit_log(
    *,
    event: str,
    acting_user: User | None = None,
    subject_user: User | None = None,
    client_id: str = "",
    ip: str = "",
    data: dict[str, Any] | None = None,
) -> AuditEvent:
    return AuditEvent.objects.create(
        event=event,
        acting_user_id=acting_user.pk if acting_user else None,
        subject_user_id=subject_user.pk if subject_user else None,
        client_id=client_id,
        ip_hash=ip_fingerprint(ip),
        data=data or {},
    )


class AccountError(ValueError):
    """A resident-facing reason why an account operation was refused."""


@transaction.atomic
def user_create(
    *,
    email: str,
    password: str | None,
    given_name: str = "",
    family_name: str = "",
    email_verified: bool = False,
    preferred_language: str = "fr",
    acting_user: User | None = None,
    validate: bool = True,
) -> User:
    """Create a resident. Raises AccountError (duplicate) or ValidationError (weak password)."""
    email = normalize_email(email)
    if User.objects.filter(email=email).exists():
        raise AccountError("an account already exists for this email address")
    user = User(
        email=email,
        given_name=given_name.strip(),
        family_name=family_name.strip(),
        email_verified=email_verified,
        preferred_language=preferred_language,
    )
    if password is not None:
        if validate:
            validate_password(password, user)
        user.set_password(password)
    else:
        user.set_unusable_password()
    user.full_clean(exclude=["password"])
    user.save()
    audit_log(event="account.created", acting_user=acting_user, subject_user=user)
    return user


def session_login(*, request: HttpRequest, user: User, amr: list[str]) -> None:
    """Open a browser session and remember when and how the resident authenticated."""
    django_login(request, user, backend="identity.backends.EmailBackend")
    request.session[SESSION_AUTH_TIME] = int(time.time())
    request.session[SESSION_AMR] = amr


# --- partner clients ----------------------------------------------------------------------

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1"}


class ClientConfigError(ValueError):
    """An operator-facing reason why a client registration was refused."""


def validate_client_uri(uri: str, *, what: str) -> str:
    from urllib.parse import urlsplit

    try:
        parts = urlsplit(uri)
        hostname = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a malformed port
    except ValueError as exc:
        raise ClientConfigError(f"{what} {uri!r} is not a valid URL") from exc
    if parts.scheme not in {"https", "http"} or not hostname:
        raise ClientConfigError(f"{what} {uri!r} must be an absolute https URL")
    if parts.fragment or "#" in uri:
        raise ClientConfigError(f"{what} {uri!r} must not contain a fragment")
    if parts.scheme == "http" and hostname not in LOOPBACK_HOSTS:
        raise ClientConfigError(f"{what} {uri!r} must use https (http is allowed only on loopback)")
    if any(ch.isspace() for ch in uri):
        raise ClientConfigError(f"{what} {uri!r} must not contain spaces")
    return uri


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
) -> tuple[Any, str | None]:
    """Register a partner client. Returns the client and its secret (None for public clients).

    The secret is shown once: only its keyed hash is stored.
    """
    from oauth2_provider.models import get_application_model

    from identity.crypto import generate_secret, keyed_hash
    from identity.oidc.constants import GRANT_AUTHORIZATION_CODE, REGISTRABLE_GRANTS, SUPPORTED_SCOPES

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
        if scope not in SUPPORTED_SCOPES:
            raise ClientConfigError(f"unknown scope {scope!r} (choose from {', '.join(SUPPORTED_SCOPES)})")
    redirect_uris = [validate_client_uri(uri, what="redirect URI") for uri in redirect_uris or []]
    if GRANT_AUTHORIZATION_CODE in grant_types and not redirect_uris:
        raise ClientConfigError("the authorization_code grant needs at least one redirect URI")
    post_logout = [
        validate_client_uri(uri, what="post-logout redirect URI") for uri in post_logout_redirect_uris or []
    ]
    if backchannel_logout_uri:
        validate_client_uri(backchannel_logout_uri, what="back-channel logout URI")

    Client = get_application_model()
    secret = None if public else generate_secret()
    client = Client(
        name=name,
        client_type=Client.CLIENT_PUBLIC if public else Client.CLIENT_CONFIDENTIAL,
        authorization_grant_type=grant_types[0].replace("_", "-"),
        grant_types=" ".join(grant_types),
        allowed_scopes=" ".join(scopes),
        redirect_uris=" ".join(redirect_uris),
        post_logout_redirect_uris=" ".join(post_logout),
        backchannel_logout_uri=backchannel_logout_uri,
        is_internal=is_internal,
        is_resource_server=is_resource_server,
        skip_authorization=skip_authorization,
        client_secret=keyed_hash(secret) if secret else "",
        algorithm=Client.RS256_ALGORITHM,
    )
    client.save()
    audit_log(event="client.registered", acting_user=acting_user, client_id=client.client_id)
    return client, secret
