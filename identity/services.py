"""Writes of the identity app. Keyword-only, one transaction each, audit in the same transaction."""

from __future__ import annotations

import hashlib
import hmac
import time
from enum import StrEnum
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
    """Open a browser session and remember when and how the resident authenticated.

    The session is also a record (identity.sessions.BrowserSession) whose `sid` the
    Django session holds: it goes into ID tokens and lets the session be ended from
    anywhere (sign-out everywhere, revocation from the account pages).
    """
    from identity.sessions import SESSION_SID, browser_session_open

    previous_sid = request.session.get(SESSION_SID)  # read before login() may flush it
    auth_time = int(time.time())
    with transaction.atomic():
        django_login(request, user, backend="identity.backends.EmailBackend")
        request.session[SESSION_AUTH_TIME] = auth_time
        request.session[SESSION_AMR] = amr
        browser_session_open(
            request=request, user=user, amr=amr, auth_time=auth_time, previous_sid=previous_sid
        )


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
    if parts.scheme == "http" and (hostname not in LOOPBACK_HOSTS or not settings.ALLOW_HTTP_LOOPBACK_REDIRECTS):
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
    sector_identifier_uri: str = "",
    signing_alg: str = "RS256",
    frontchannel_logout_uri: str = "",
    backchannel_logout_session_required: bool = False,
    frontchannel_logout_session_required: bool = False,
) -> tuple[Any, str | None]:
    """Register a partner client. Returns the client and its secret (None for public clients).

    The secret is shown once: only its keyed hash is stored. The pairwise-subject sector
    is fixed here (identity/oidc/subjects.py): the sector identifier URI's host, else the
    one host all redirect URIs share (several hosts without a sector are refused).
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
        backchannel_logout_session_required=backchannel_logout_session_required,
        frontchannel_logout_uri=frontchannel_logout_uri,
        frontchannel_logout_session_required=frontchannel_logout_session_required,
        sector_identifier_uri=sector_identifier_uri,
        is_internal=is_internal,
        is_resource_server=is_resource_server,
        skip_authorization=skip_authorization,
        client_secret=keyed_hash(secret) if secret else "",
        algorithm=signing_alg,
    )
    # A client without redirect URIs (client credentials only) is a sector of its own.
    client.subject_sector = sector or f"client:{client.client_id}"
    client.save()
    audit_log(event="client.registered", acting_user=acting_user, client_id=client.client_id)
    return client, secret


# --- resident accounts: registration, verification, passwords, sign-in records -------------
#
# Emails leave after the transaction commits (identity.emails); the audit rows are written
# inside it. Anything that would tell a visitor whether an address has an account stays
# out of the return values: callers show the same page whatever happened.


def _email_on_commit(*, to: str, template: str, context: dict[str, Any], language: str) -> None:
    from identity.emails import send_email

    transaction.on_commit(lambda: send_email(to=to, template=template, context=context, language=language))


def _create_verification(*, user: User) -> str:
    from datetime import timedelta

    from django.utils import timezone

    from identity.crypto import generate_secret, keyed_hash
    from identity.models import EmailVerification

    token = generate_secret()
    EmailVerification.objects.create(
        user=user,
        token_hash=keyed_hash(token),
        email=user.email,
        expires_at=timezone.now() + timedelta(seconds=settings.EMAIL_VERIFICATION_TIMEOUT),
    )
    return token


def _send_verification(*, user: User, token: str) -> None:
    from django.urls import reverse

    from identity.emails import absolute_url

    _email_on_commit(
        to=user.email,
        template="verify_email",
        context={
            "given_name": user.given_name,
            "url": absolute_url(reverse("identity:verify-email", kwargs={"token": token})),
            "valid_days": max(1, settings.EMAIL_VERIFICATION_TIMEOUT // 86400),
        },
        language=user.preferred_language,
    )


@transaction.atomic
def account_register(
    *,
    email: str,
    password: str,
    given_name: str,
    family_name: str,
    preferred_language: str = "fr",
    ip: str = "",
    notify_existing: bool = True,
) -> None:
    """Create an unverified account and email a verification link.

    If the address already has an account, nothing is created: its owner is told by
    email (unless `notify_existing` is False: the caller's per-address limit is reached)
    that someone tried to register and how to recover access. The caller cannot tell
    the two cases apart (nor, roughly, by timing: the password is hashed either way).
    """
    from django.contrib.auth.hashers import make_password
    from django.db import IntegrityError
    from django.urls import reverse

    from identity.emails import absolute_url

    email = normalize_email(email)
    existing = User.objects.filter(email=email).first()
    if existing is None:
        try:
            with transaction.atomic():
                user = user_create(
                    email=email,
                    password=password,
                    given_name=given_name,
                    family_name=family_name,
                    email_verified=False,
                    preferred_language=preferred_language,
                )
        except (AccountError, IntegrityError):  # registered concurrently
            existing = User.objects.filter(email=email).first()
        else:
            _send_verification(user=user, token=_create_verification(user=user))
            return
    make_password(password)
    if existing is None:  # pragma: no cover - deleted in the meantime
        return
    audit_log(event="account.registration_duplicate", subject_user=existing, ip=ip)
    if not notify_existing:
        return
    _email_on_commit(
        to=existing.email,
        template="register_existing",
        context={
            "given_name": existing.given_name,
            "login_url": absolute_url(reverse("identity:login")),
            "reset_url": absolute_url(reverse("identity:password-reset")),
        },
        language=existing.preferred_language,
    )


@transaction.atomic
def email_verification_send(*, user: User, ip: str = "") -> bool:
    """Email a new verification link to a resident whose address is not verified yet."""
    if user.email_verified or not user.is_active:
        return False
    token = _create_verification(user=user)
    audit_log(event="account.verification_sent", acting_user=user, subject_user=user, ip=ip)
    _send_verification(user=user, token=token)
    return True


class VerificationResult(StrEnum):
    VERIFIED = "verified"
    USED = "used"
    EXPIRED = "expired"
    INVALID = "invalid"


@transaction.atomic
def email_verification_confirm(*, token: str, ip: str = "") -> VerificationResult:
    """Use a verification link once."""
    from django.utils import timezone

    from identity.crypto import keyed_hash
    from identity.models import EmailVerification

    if not token or len(token) > 200:
        return VerificationResult.INVALID
    verification = (
        EmailVerification.objects.select_for_update()
        .select_related("user")
        .filter(token_hash=keyed_hash(token))
        .first()
    )
    if verification is None:
        return VerificationResult.INVALID
    now = timezone.now()
    if verification.used_at is not None:
        return VerificationResult.USED
    if verification.expires_at <= now:
        return VerificationResult.EXPIRED
    user = verification.user
    if verification.email != user.email or not user.is_active:
        # The address changed since the link was sent: it proves nothing any more.
        return VerificationResult.INVALID
    # Every outstanding link for this resident is spent at once.
    EmailVerification.objects.filter(user=user, used_at__isnull=True).update(used_at=now)
    if not user.email_verified:
        user.email_verified = True
        user.save(update_fields=["email_verified", "updated_at"])
    audit_log(event="account.email_verified", subject_user=user, ip=ip)
    return VerificationResult.VERIFIED


@transaction.atomic
def password_reset_request(*, user: User, ip: str = "") -> None:
    """Email a password-reset link to an account the caller found for a typed address.

    Django's token: it expires after PASSWORD_RESET_TIMEOUT and is spent as soon as the
    password (or the last sign-in) changes.
    """
    from django.contrib.auth.tokens import default_token_generator
    from django.urls import reverse
    from django.utils.encoding import force_bytes
    from django.utils.http import urlsafe_base64_encode

    from identity.emails import absolute_url

    audit_log(event="password.reset_requested", subject_user=user, ip=ip)
    uid = urlsafe_base64_encode(force_bytes(user.pk))
    token = default_token_generator.make_token(user)
    path = reverse("identity:password-reset-confirm", kwargs={"uidb64": uid, "token": token})
    _email_on_commit(
        to=user.email,
        template="password_reset",
        context={
            "given_name": user.given_name,
            "url": absolute_url(path),
            "valid_minutes": max(1, settings.PASSWORD_RESET_TIMEOUT // 60),
        },
        language=user.preferred_language,
    )


def _set_password(*, user: User, password: str, event: str, ip: str, acting_user: User | None) -> None:
    from django.urls import reverse

    from identity.emails import absolute_url

    user.set_password(password)
    fields = ["password", "updated_at"]
    if event == "password.reset" and not user.email_verified:
        # The reset link reached this mailbox: that proves the address as well.
        user.email_verified = True
        fields.append("email_verified")
    user.save(update_fields=fields)
    audit_log(event=event, acting_user=acting_user, subject_user=user, ip=ip)
    _email_on_commit(
        to=user.email,
        template="password_changed",
        context={
            "given_name": user.given_name,
            "reset_url": absolute_url(reverse("identity:password-reset")),
        },
        language=user.preferred_language,
    )


@transaction.atomic
def user_password_change(*, user: User, password: str, ip: str = "") -> None:
    """The signed-in resident changed their password (the caller checked the current one)."""
    _set_password(user=user, password=password, event="password.changed", ip=ip, acting_user=user)


@transaction.atomic
def user_password_reset(*, user: User, password: str, ip: str = "") -> None:
    """A password set through an emailed reset link. Other sessions end (session auth hash)."""
    _set_password(user=user, password=password, event="password.reset", ip=ip, acting_user=None)


def login_record_success(*, user: User, ip: str = "", known_device: bool = False) -> None:
    audit_log(event="login.succeeded", subject_user=user, ip=ip, data={"known_device": known_device})


def login_record_failure(*, user: User, ip: str = "", known_device: bool = False) -> None:
    audit_log(event="login.failed", subject_user=user, ip=ip, data={"known_device": known_device})


def login_record_lockout(*, user: User | None, ip: str = "", scope: str) -> None:
    audit_log(event="login.locked", subject_user=user, ip=ip, data={"scope": scope})


def session_logout(*, request: HttpRequest, ip: str = "") -> None:
    """End the browser session (the resident asked to sign out)."""
    from django.contrib.auth import logout as django_logout

    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        audit_log(event="logout", acting_user=user, subject_user=user, ip=ip)
    django_logout(request)
