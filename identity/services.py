"""Writes of the identity app. Keyword-only, one transaction each, audit in the same transaction."""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass
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
    from identity.mfa.flow import pending_clear
    from identity.sessions import SESSION_SID, browser_session_open

    previous_sid = request.session.get(SESSION_SID)  # read before login() may flush it
    auth_time = int(time.time())
    with transaction.atomic():
        django_login(request, user, backend="identity.backends.EmailBackend")
        # A second step someone else left half-finished in this browser (shared computer)
        # must not outlive this sign-in: it would be offered to this session's step-up.
        pending_clear(request)
        request.session[SESSION_AUTH_TIME] = auth_time
        request.session[SESSION_AMR] = amr
        record = browser_session_open(
            request=request, user=user, amr=amr, auth_time=auth_time, previous_sid=previous_sid
        )
        # Staff sign-ins are audited apart (identity.reauth: ids and methods only).
        from identity.reauth import staff_sign_in_audit

        staff_sign_in_audit(user=user, amr=amr, session_id=record.pk)


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
    if parts.scheme == "http" and (
        hostname not in LOOPBACK_HOSTS or not settings.ALLOW_HTTP_LOOPBACK_REDIRECTS
    ):
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

    from identity.crypto import generate_secret, keyed_hash
    from identity.oidc.claims import supported_scopes
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


# --- resident accounts: registration, verification, passwords, sign-in records -------------
#
# Emails are queued in the outbox inside the transaction, with the audit rows, and sent by
# the outbox worker after it commits (identity.emails): a request never waits on SMTP.
# Anything that would tell a visitor whether an address has an account stays out of the
# return values: callers show the same page whatever happened.


def _queue_email(*, to: str, template: str, context: dict[str, Any], language: str) -> None:
    from identity.emails import send_email

    send_email(to=to, template=template, context=context, language=language)


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

    _queue_email(
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
    _queue_email(
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
    _queue_email(
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
    _queue_email(
        to=user.email,
        template="password_changed",
        context={
            "given_name": user.given_name,
            "reset_url": absolute_url(reverse("identity:password-reset")),
            # Built from the new password hash: valid until the password changes again.
            "not_me_url": not_me_url(user=user, source="password_changed"),
            "not_me_days": not_me_days(),
        },
        language=user.preferred_language,
    )


@transaction.atomic
def user_password_change(*, user: User, password: str, ip: str = "", keep_session: Any = None) -> int:
    """The signed-in resident changed their password (the caller checked the current one).

    Every other browser session of the resident ends (records, tokens, partners told);
    `keep_session` (the BrowserSession or sid of the browser that made the change) stays.
    Returns how many sessions ended.
    """
    from identity.sessions import sessions_end_all

    _set_password(user=user, password=password, event="password.changed", ip=ip, acting_user=user)
    return sessions_end_all(
        user=user, except_current=keep_session, reason="password_changed", acting_user=user, ip=ip
    )


@transaction.atomic
def user_password_reset(*, user: User, password: str, ip: str = "") -> int:
    """A password set through an emailed reset link. Every session of the resident ends:
    the records, the tokens issued in them, with back-channel logout to the partners
    (identity.sessions.sessions_end_all). Returns how many sessions ended."""
    from identity.sessions import sessions_end_all

    _set_password(user=user, password=password, event="password.reset", ip=ip, acting_user=None)
    return sessions_end_all(user=user, reason="password_reset", acting_user=user, ip=ip)


def login_record_success(*, user: User, ip: str = "", known_device: bool = False) -> None:
    audit_log(event="login.succeeded", subject_user=user, ip=ip, data={"known_device": known_device})


def login_record_failure(*, user: User | None, ip: str = "", known_device: bool = False) -> None:
    """A wrong password (or an unknown address: `user` None; the address is never recorded)."""
    audit_log(
        event="login.failed",
        subject_user=user,
        ip=ip,
        data={"known_device": known_device, "known_account": user is not None},
    )


def login_record_blocked(*, user: User | None, ip: str = "", scope: str) -> None:
    """An attempt refused by a limit before the password was looked at."""
    audit_log(event="login.blocked", subject_user=user, ip=ip, data={"scope": scope})


def password_check_record_failure(*, user: User, ip: str = "") -> None:
    """A wrong current password typed by a signed-in session (password change)."""
    audit_log(event="password.check_failed", acting_user=user, subject_user=user, ip=ip)


@transaction.atomic
def login_notify_new_device(
    *, user: User, known_device: bool, first_sign_in: bool, device: str, ip: str = ""
) -> bool:
    """After a full sign-in: email the resident when the browser is not a known device.

    A known device is a browser holding the signed known-device cookie for this account
    (identity.ratelimit.remember_device, set at every full sign-in): the first sign-in
    of each new browser is reported once. The very first sign-in of an account (no
    `last_login` yet, e.g. right after registration) is not. Returns whether it emailed.
    """
    from django.urls import reverse
    from django.utils import timezone

    from identity.emails import absolute_url

    if known_device or first_sign_in:
        return False
    audit_log(event="login.new_device_notified", subject_user=user, ip=ip)
    _queue_email(
        to=user.email,
        template="new_device",
        context={
            "given_name": user.given_name,
            "device": device,
            "when": timezone.now(),
            "sessions_url": absolute_url(reverse("identity:sessions")),
            "not_me_url": not_me_url(user=user, source="new_device"),
            "not_me_days": not_me_days(),
        },
        language=user.preferred_language,
    )
    return True


def login_record_lockout(*, user: User | None, ip: str = "", scope: str) -> None:
    audit_log(event="login.locked", subject_user=user, ip=ip, data={"scope": scope})


def session_logout(*, request: HttpRequest, ip: str = "") -> None:
    """End the browser session (the resident asked to sign out)."""
    from django.contrib.auth import logout as django_logout

    user = getattr(request, "user", None)
    if user is not None and user.is_authenticated:
        audit_log(event="logout", acting_user=user, subject_user=user, ip=ip)
    django_logout(request)


# --- "Ce n'était pas vous ?" ----------------------------------------------------------------
#
# Every security notification carries a link that lets the resident react even when they
# cannot sign in any more. The token is signed (django.core.signing.TimestampSigner, own
# salt), expires after NOT_ME_MAX_AGE, and embeds a keyed fingerprint of the password
# hash. Using it replaces the password, so the fingerprint no longer matches: the link is
# single-use without any stored state (the idea of Django's password-reset tokens). Any
# other password change also spends the links sent before it; the change's own email
# brings a fresh one.

NOT_ME_SALT = "identity.not-me"
NOT_ME_MAX_AGE = 7 * 24 * 60 * 60
NOT_ME_SOURCES = {
    "new_device",
    "password_changed",
    "mfa_factor_added",
    "mfa_factor_removed",
    "mfa_backup_code_used",
    "mfa_factors_reset",
}


def not_me_days() -> int:
    return max(1, NOT_ME_MAX_AGE // 86400)


def _not_me_fingerprint(user: User) -> str:
    from django.utils.crypto import salted_hmac

    value = f"{user.pk}:{user.password}:{int(user.is_active)}"
    return salted_hmac(NOT_ME_SALT, value, algorithm="sha256").hexdigest()[:32]


def not_me_token(*, user: User, source: str, factor: tuple[str, int] | None = None) -> str:
    """`factor` (kind, id): the second factor the email announced, removed if the link is used."""
    from django.core import signing

    if source not in NOT_ME_SOURCES:
        raise ValueError(f"unknown notification {source!r}")
    value = f"{user.pk.hex}.{_not_me_fingerprint(user)}.{source}"
    if factor is not None:
        value += f".{factor[0]}-{int(factor[1])}"
    return signing.TimestampSigner(salt=NOT_ME_SALT).sign(value)


def not_me_url(*, user: User, source: str, factor: tuple[str, int] | None = None) -> str:
    from django.urls import reverse

    from identity.emails import absolute_url

    token = not_me_token(user=user, source=source, factor=factor)
    return absolute_url(reverse("identity:not-me", kwargs={"token": token}))


class NotMeResult(StrEnum):
    VALID = "valid"
    DONE = "done"
    USED = "used"  # or the password changed since the email was sent
    EXPIRED = "expired"
    INVALID = "invalid"


@dataclass
class NotMeCheck:
    result: NotMeResult
    user: User | None = None
    source: str = ""
    sessions_ended: int = 0
    reset_sent: bool = False
    factor: tuple[str, int] | None = None
    factor_removed: bool = False


def not_me_check(*, token: str, lock: bool = False) -> NotMeCheck:
    """What a "this wasn't me" link is worth now. Changes nothing."""
    import uuid

    from django.core import signing

    if not token or len(token) > 300:
        return NotMeCheck(NotMeResult.INVALID)
    signer = signing.TimestampSigner(salt=NOT_ME_SALT)
    try:
        value = signer.unsign(token, max_age=NOT_ME_MAX_AGE)
    except signing.SignatureExpired:
        return NotMeCheck(NotMeResult.EXPIRED)
    except signing.BadSignature:
        return NotMeCheck(NotMeResult.INVALID)
    parts = value.split(".")
    if len(parts) not in (3, 4) or parts[2] not in NOT_ME_SOURCES:
        return NotMeCheck(NotMeResult.INVALID)
    factor: tuple[str, int] | None = None
    if len(parts) == 4:
        kind, _sep, factor_id = parts[3].partition("-")
        if not factor_id.isdigit():
            return NotMeCheck(NotMeResult.INVALID)
        factor = (kind, int(factor_id))
    try:
        user_id = uuid.UUID(hex=parts[0])
    except ValueError:
        return NotMeCheck(NotMeResult.INVALID)
    users = User.objects.select_for_update() if lock else User.objects
    user = users.filter(pk=user_id).first()
    if user is None:
        return NotMeCheck(NotMeResult.INVALID)
    if not hmac.compare_digest(parts[1], _not_me_fingerprint(user)):
        return NotMeCheck(NotMeResult.USED)
    return NotMeCheck(NotMeResult.VALID, user=user, source=parts[2], factor=factor)


@transaction.atomic
def account_not_me_confirm(*, token: str, ip: str = "") -> NotMeCheck:
    """The resident says a notified action was not theirs.

    Ends every session (records, tokens, back-channel logout to partners), replaces the
    password by a random one nobody knows (so the link is spent, as are pending reset
    links, and the forgot-password form keeps working), emails a password-reset link and
    writes an audit event. An account without a usable password (FranceConnect only)
    gets a fresh unusable one and no reset email.
    """
    import secrets

    from identity.sessions import sessions_end_all

    check = not_me_check(token=token, lock=True)
    if check.result != NotMeResult.VALID or check.user is None:
        return check
    user = check.user
    factor_removed = False
    if check.factor is not None:
        # The email announced a new second factor: someone else's, so it goes too.
        from identity.mfa.services import factor_remove_reported

        factor_removed = factor_remove_reported(
            user=user, kind=check.factor[0], factor_id=check.factor[1], ip=ip
        )
    ended = sessions_end_all(user=user, reason="reported_not_me", acting_user=user, ip=ip)
    had_password = user.has_usable_password()
    if had_password:
        user.set_password(secrets.token_urlsafe(32))
    else:
        user.set_unusable_password()
    user.save(update_fields=["password", "updated_at"])
    audit_log(
        event="account.compromise_reported",
        acting_user=user,
        subject_user=user,
        ip=ip,
        data={
            "source": check.source,
            "sessions_ended": ended,
            "password_replaced": had_password,
            "factor_removed": factor_removed,
        },
    )
    reset_sent = False
    if had_password and user.is_active:
        password_reset_request(user=user, ip=ip)
        reset_sent = True
    return NotMeCheck(
        NotMeResult.DONE,
        user=user,
        source=check.source,
        sessions_ended=ended,
        reset_sent=reset_sent,
        factor=check.factor,
        factor_removed=factor_removed,
    )
