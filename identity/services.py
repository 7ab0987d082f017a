"""Writes of the resident accounts: creation, registration, email verification, passwords,
personal information (names, phone, postal address, a change of email address), and what a
"this wasn't me" link does to an account. Keyword-only, one transaction each,
audit in the same transaction.

Neighbours: sign-in and sign-out in identity.signin, the "this wasn't me" links in
identity.not_me, the audit writer in identity.audit; partner clients are identity.oidc's
(identity.oidc.clients).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from django.conf import settings
from django.contrib.auth.hashers import make_password
from django.contrib.auth.password_validation import validate_password
from django.contrib.auth.tokens import default_token_generator
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from common.crypto import generate_secret, keyed_hash
from identity.audit import audit_log
from identity.emails import absolute_url, send_email
from identity.mfa.services import factor_remove_reported
from identity.models import EmailChange, EmailVerification, User, normalize_email
from identity.not_me import (
    NOT_ME_MAX_AGE,
    NotMeCheck,
    NotMeResult,
    not_me_check,
    not_me_days,
    not_me_url,
)
from identity.sessions import sessions_end_all


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


# --- registration, verification, passwords ---------------------------------------------------
#
# Emails are queued in the outbox inside the transaction, with the audit rows, and sent by
# the outbox worker after it commits (identity.emails): a request never waits on SMTP.
# Anything that would tell a visitor whether an address has an account stays out of the
# return values: callers show the same page whatever happened.


def _queue_email(*, to: str, template: str, context: dict[str, Any], language: str) -> None:
    send_email(to=to, template=template, context=context, language=language)


def _create_verification(*, user: User) -> str:
    token = generate_secret()
    EmailVerification.objects.create(
        user=user,
        token_hash=keyed_hash(token),
        email=user.email,
        expires_at=timezone.now() + timedelta(seconds=settings.EMAIL_VERIFICATION_TIMEOUT),
    )
    return token


def _send_verification(*, user: User, token: str) -> None:
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


@transaction.atomic
def password_reset_request_unknown(*, email: str, language: str, ip: str = "") -> None:
    """A reset asked for an address without an account: tell that mailbox so, and do the
    same work as for an account (an audit row, one email queued), so that neither the
    answer nor its timing says whether the address has an account. The address itself is
    not written to the audit row (it may belong to no resident); only the email carries it.
    """
    audit_log(event="password.reset_requested_unknown", ip=ip)
    _queue_email(
        to=email,
        template="password_reset_unknown",
        context={
            "given_name": "",
            "register_url": absolute_url(reverse("identity:register")),
            "reset_url": absolute_url(reverse("identity:password-reset")),
        },
        language=language,
    )


def _set_password(*, user: User, password: str, event: str, ip: str, acting_user: User | None) -> None:
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

    _set_password(user=user, password=password, event="password.changed", ip=ip, acting_user=user)
    return sessions_end_all(
        user=user, except_current=keep_session, reason="password_changed", acting_user=user, ip=ip
    )


@transaction.atomic
def user_password_reset(*, user: User, password: str, ip: str = "") -> int:
    """A password set through an emailed reset link. Every session of the resident ends:
    the records, the tokens issued in them, with back-channel logout to the partners
    (identity.sessions.sessions_end_all). Returns how many sessions ended."""

    _set_password(user=user, password=password, event="password.reset", ip=ip, acting_user=None)
    return sessions_end_all(user=user, reason="password_reset", acting_user=user, ip=ip)


# --- "Ce n'était pas vous ?": the account side (the links are identity.not_me) ---------------


@transaction.atomic
def account_not_me_confirm(*, token: str, ip: str = "") -> NotMeCheck:
    """The resident says a notified action was not theirs.

    Ends every session (records, tokens, back-channel logout to partners), replaces the
    password by a random one nobody knows (so the link is spent, as are pending reset
    links, and the forgot-password form keeps working), emails a password-reset link and
    writes an audit event. An account without a usable password (FranceConnect only)
    gets a fresh unusable one and no reset email.
    """

    check = not_me_check(token=token, lock=True)
    if check.result != NotMeResult.VALID or check.user is None:
        return check
    user = check.user
    factor_removed = False
    if check.factor is not None:
        # The email announced a new second factor: someone else's, so it goes too.

        factor_removed = factor_remove_reported(
            user=user, kind=check.factor[0], factor_id=check.factor[1], ip=ip
        )
    ended = sessions_end_all(user=user, reason="reported_not_me", acting_user=user, ip=ip)
    # A change of address asked from a stolen session must not complete either, and one
    # already completed is undone (the password-reset link below goes to the old address).
    _email_changes_cancel(user=user)
    if check.source == "email_change_requested":
        _email_change_undo(user=user, ip=ip)
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


# --- personal information ("Mon compte" > "Informations personnelles") ------------------------


@dataclass(frozen=True)
class PostalAddress:
    """A postal address as the `address` claim carries it (OIDC Core §5.1.1). Empty: no address."""

    street_address: str = ""
    locality: str = ""
    postal_code: str = ""
    country: str = ""


# Listeners told, inside the transaction that saved them, which of a resident's details changed
# (field names of User): the partners provisioned with them (connectors' SCIM partners, which
# sit above identity and register here at start-up) queue their update in the same transaction.
AccountChangedListener = Callable[[User, list[str]], None]
_changed_listeners: list[AccountChangedListener] = []


def register_account_changed_listener(listener: AccountChangedListener) -> None:
    if listener not in _changed_listeners:
        _changed_listeners.append(listener)


def _account_changed(user: User, fields: list[str]) -> None:
    for listener in _changed_listeners:
        listener(user, fields)


PROFILE_FIELDS = (
    "given_name",
    "family_name",
    "phone_number",
    "street_address",
    "locality",
    "postal_code",
    "region",
    "country",
)


@transaction.atomic
def profile_update(
    *,
    user: User,
    given_name: str,
    family_name: str,
    phone_number: str,
    address: PostalAddress,
    ip: str = "",
) -> list[str]:
    """Save the resident's names, phone number (E.164, already checked by the caller) and
    postal address. A new phone number is not verified. The audit row names the fields
    that changed, never their values. Returns those field names."""

    values = {
        "given_name": given_name.strip(),
        "family_name": family_name.strip(),
        "phone_number": phone_number.strip(),
        "street_address": address.street_address.strip(),
        "locality": address.locality.strip(),
        "postal_code": address.postal_code.strip(),
        # The region is not asked: a commune and its postcode say enough.
        "region": "",
        "country": address.country.strip(),
    }
    changed = [field for field in PROFILE_FIELDS if getattr(user, field) != values[field]]
    if not changed:
        return []
    for field in changed:
        setattr(user, field, values[field])
    update_fields = [*changed, "updated_at"]
    if "phone_number" in changed and user.phone_number_verified:
        user.phone_number_verified = False
        update_fields.append("phone_number_verified")
    user.full_clean(exclude=["password"])
    user.save(update_fields=update_fields)
    audit_log(
        event="account.profile_updated", acting_user=user, subject_user=user, ip=ip, data={"fields": changed}
    )
    _account_changed(user, changed)
    return changed


def _email_change_undo(*, user: User, ip: str) -> bool:
    """Put back the address a recent change replaced, when "this wasn't me" comes from the
    notice sent to it (within the link's lifetime) and nobody else took it since."""

    change = (
        EmailChange.objects.filter(
            user=user,
            used_at__gte=timezone.now() - timedelta(seconds=NOT_ME_MAX_AGE),
            new_email=user.email,
        )
        .order_by("-used_at")
        .first()
    )
    if change is None or User.objects.filter(email=change.old_email).exclude(pk=user.pk).exists():
        return False
    user.email = change.old_email
    # The "this wasn't me" link reached that mailbox.
    user.email_verified = True
    user.save(update_fields=["email", "email_verified", "updated_at"])
    audit_log(event="account.email_restored", acting_user=user, subject_user=user, ip=ip)
    _account_changed(user, ["email"])
    return True


def _email_changes_cancel(*, user: User) -> int:
    return EmailChange.objects.filter(user=user, used_at__isnull=True, cancelled_at__isnull=True).update(
        cancelled_at=timezone.now()
    )


@transaction.atomic
def email_change_request(*, user: User, new_email: str, ip: str = "") -> None:
    """The signed-in resident (password checked by the caller) asks to use another address.

    The new address gets a single-use link valid EMAIL_VERIFICATION_TIMEOUT; the current
    address gets a notice with a "this wasn't me" link, and keeps signing in until the link
    is used. An earlier pending request is cancelled. If the new address already belongs to
    another account, no link is sent: its owner is told instead, and the page the resident
    sees is the same (the form does not reveal who has an account).
    """

    new_email = normalize_email(new_email)
    if not new_email or new_email == user.email:
        raise AccountError("the new address is the current one")
    _email_changes_cancel(user=user)
    owner = User.objects.filter(email=new_email).exclude(pk=user.pk).first()
    audit_log(
        event="account.email_change_requested",
        acting_user=user,
        subject_user=user,
        ip=ip,
        data={"link_sent": owner is None},
    )
    if owner is not None:
        _queue_email(
            to=new_email,
            template="email_change_existing",
            context={
                "login_url": absolute_url(reverse("identity:login")),
                "reset_url": absolute_url(reverse("identity:password-reset")),
            },
            language=owner.preferred_language,
        )
    else:
        token = generate_secret()
        EmailChange.objects.create(
            user=user,
            token_hash=keyed_hash(token),
            new_email=new_email,
            old_email=user.email,
            expires_at=timezone.now() + timedelta(seconds=settings.EMAIL_VERIFICATION_TIMEOUT),
        )
        _queue_email(
            to=new_email,
            template="email_change_verify",
            context={
                "given_name": user.given_name,
                "url": absolute_url(reverse("identity:email-change-confirm", kwargs={"token": token})),
                "valid_days": max(1, settings.EMAIL_VERIFICATION_TIMEOUT // 86400),
            },
            language=user.preferred_language,
        )
    _queue_email(
        to=user.email,
        template="email_change_notice",
        context={
            "given_name": user.given_name,
            "new_email": new_email,
            "reset_url": absolute_url(reverse("identity:password-reset")),
            "not_me_url": not_me_url(user=user, source="email_change_requested"),
            "not_me_days": not_me_days(),
        },
        language=user.preferred_language,
    )


@transaction.atomic
def email_change_cancel(*, user: User, ip: str = "") -> bool:
    """The resident withdraws a pending change of address: its link stops working."""
    cancelled = _email_changes_cancel(user=user)
    if cancelled:
        audit_log(event="account.email_change_cancelled", acting_user=user, subject_user=user, ip=ip)
    return bool(cancelled)


class EmailChangeResult(StrEnum):
    VALID = "valid"  # checked, not used yet (the confirmation page)
    CHANGED = "changed"
    USED = "used"
    CANCELLED = "cancelled"
    EXPIRED = "expired"
    TAKEN = "taken"
    INVALID = "invalid"


def _email_change_state(change: EmailChange | None) -> EmailChangeResult:
    if change is None or not change.user.is_active:
        return EmailChangeResult.INVALID
    if change.used_at is not None:
        return EmailChangeResult.USED
    if change.cancelled_at is not None:
        return EmailChangeResult.CANCELLED
    if change.expires_at <= timezone.now():
        return EmailChangeResult.EXPIRED
    if User.objects.filter(email=change.new_email).exclude(pk=change.user_id).exists():
        return EmailChangeResult.TAKEN
    return EmailChangeResult.VALID


def _email_change_find(token: str, *, lock: bool) -> EmailChange | None:
    if not token or len(token) > 200:
        return None
    changes = EmailChange.objects.select_for_update() if lock else EmailChange.objects
    return changes.select_related("user").filter(token_hash=keyed_hash(token)).first()


def email_change_check(*, token: str) -> EmailChangeResult:
    """What an email-change link is worth now. Changes nothing (the page before the button)."""
    return _email_change_state(_email_change_find(token, lock=False))


@transaction.atomic
def email_change_confirm(*, token: str, ip: str = "") -> EmailChangeResult:
    """Use an email-change link once: the account signs in with the new address from now on,
    and that address is verified (the link reached it)."""

    change = _email_change_find(token, lock=True)
    state = _email_change_state(change)
    if state != EmailChangeResult.VALID or change is None:
        return state
    user = User.objects.select_for_update().get(pk=change.user_id)
    now = timezone.now()
    user.email = change.new_email
    user.email_verified = True
    try:
        with transaction.atomic():
            user.save(update_fields=["email", "email_verified", "updated_at"])
    except IntegrityError:  # the address was taken at the same moment
        return EmailChangeResult.TAKEN
    change.used_at = now
    change.save(update_fields=["used_at"])
    _email_changes_cancel(user=user)
    # Links sent to the old address prove nothing about the new one.
    EmailVerification.objects.filter(user=user, used_at__isnull=True).update(used_at=now)
    audit_log(event="account.email_changed", subject_user=user, ip=ip)
    _account_changed(user, ["email"])
    return EmailChangeResult.CHANGED
