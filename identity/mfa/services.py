"""Writes of the MFA app: enrolment, verification and removal of second factors.

Keyword-only functions, one transaction each, the audit row (ids only) in the same
transaction; emails are queued in the outbox in it. Every verification locks the factor's row
(`select_for_update`) before reading its throttle and replay state, so that two
concurrent attempts are serialised: one code cannot be accepted twice and the
throttle cannot be bypassed by racing requests.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.urls import reverse

from common.crypto import keyed_hash
from identity.audit import audit_log
from identity.emails import absolute_url, send_email
from identity.mfa import clock, passkeys, totp
from identity.mfa.models import BackupCode, BackupCodeDevice, Kind, Passkey, TOTPDevice
from identity.models import User
from identity.not_me import not_me_days, not_me_url
from identity.sessions import sessions_end_all

BACKUP_CODE_COUNT = 10
BACKUP_CODE_LENGTH = 10
# No 0/O, 1/I/L: codes are read from paper and typed by hand.
BACKUP_CODE_ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
ENROLMENT_MAX_AGE_SECONDS = 60 * 60
FACTOR_NAME_MAX = 64


class FactorError(ValueError):
    """A resident-facing reason why a factor operation was refused."""


@dataclass
class Outcome:
    """The result of one second-factor attempt."""

    ok: bool
    retry_after: int = 0  # > 0: refused by the throttle, without looking at the code
    methods: list[str] = field(default_factory=list)  # RFC 8176 amr values on success
    factor_id: int | None = None
    user: User | None = None
    device: Any = None  # the django-otp Device that succeeded

    @property
    def throttled(self) -> bool:
        return self.retry_after > 0


# --- emails ---------------------------------------------------------------------------------


def _notify(
    *, user: User, template: str, context: dict[str, Any], factor: tuple[str, int] | None = None
) -> None:

    full = {
        "given_name": user.given_name,
        "reset_url": absolute_url(reverse("identity:password-reset")),
        "security_url": absolute_url(reverse("identity:mfa:factors")),
        # "Ce n'était pas vous ?": ends every session and asks for a new password.
        "not_me_url": not_me_url(user=user, source=template, factor=factor),
        "not_me_days": not_me_days(),
        **context,
    }
    # Queued in the outbox in the caller's transaction; the outbox worker sends it.
    send_email(to=user.email, template=template, context=full, language=user.preferred_language)


def _factor_added(*, user: User, kind: str, factor_id: int, name: str, ip: str) -> None:
    audit_log(
        event="mfa.factor_added",
        acting_user=user,
        subject_user=user,
        ip=ip,
        data={"kind": kind, "factor_id": factor_id},
    )
    _notify(
        user=user,
        template="mfa_factor_added",
        context={"kind": kind, "kind_label": Kind(kind).label, "factor_name": name},
        factor=(str(kind), factor_id),
    )


# --- TOTP -----------------------------------------------------------------------------------


@transaction.atomic
def totp_enrolment_start(*, user: User) -> tuple[TOTPDevice, bytes]:
    """A new, not yet active, TOTP device with a fresh secret (encrypted at rest).

    Stale unfinished enrolments of the resident are dropped. Returns the device and the
    secret (to show once as a QR code and as text).
    """
    cutoff = clock.now_dt() - timedelta(seconds=ENROLMENT_MAX_AGE_SECONDS)
    TOTPDevice.objects.filter(user=user, confirmed=False, created_at__lt=cutoff).delete()
    key = totp.generate_key()
    device = TOTPDevice.objects.create(
        user=user, name=str(Kind.TOTP.label)[:FACTOR_NAME_MAX], confirmed=False
    )
    # The id is the encryption context, so the secret is written once the row exists.
    device.set_secret(key)
    device.save(update_fields=["secret_encrypted"])
    return device, key


def _check_totp(device: TOTPDevice, code: str) -> int | None:
    """The accepted time step, or None (wrong, outside the window, or already used)."""
    step = totp.matching_step(device.secret(), code, at=clock.now(), step=device.step, digits=device.digits)
    if step is None:
        return None
    if device.last_used_step is not None and step <= device.last_used_step:
        return None  # replay of a used code, or of an older one
    return step


def _accept_totp(device: TOTPDevice, step: int) -> None:
    device.last_used_step = step
    device.last_used_at = clock.now_dt()
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.save(
        update_fields=[
            "last_used_step",
            "last_used_at",
            "throttling_failure_count",
            "throttling_failure_timestamp",
            "confirmed",
        ]
    )


@transaction.atomic
def totp_enrolment_confirm(*, user: User, device_id: int, code: str, name: str = "", ip: str = "") -> Outcome:
    """Activate a pending TOTP device once the resident typed a first valid code."""
    device = TOTPDevice.objects.select_for_update().filter(pk=device_id, user=user, confirmed=False).first()
    if device is None:
        raise FactorError("no pending enrolment")
    retry = device.retry_after_seconds()
    if retry:
        return Outcome(ok=False, retry_after=retry)
    step = _check_totp(device, code)
    if step is None:
        device.throttle_increment()
        return Outcome(ok=False, retry_after=0)
    device.confirmed = True
    if name.strip():
        device.name = name.strip()[:FACTOR_NAME_MAX]
        device.save(update_fields=["name"])
    _accept_totp(device, step)
    _factor_added(user=user, kind=Kind.TOTP, factor_id=device.pk, name=device.name, ip=ip)
    return Outcome(ok=True, methods=["otp"], factor_id=device.pk, user=user, device=device)


@transaction.atomic
def totp_verify(*, user: User, code: str, ip: str = "") -> Outcome:
    """Check a code against the resident's active TOTP devices (rows locked)."""
    devices = list(TOTPDevice.objects.select_for_update().filter(user=user, confirmed=True).order_by("pk"))
    if not devices:
        return Outcome(ok=False)
    usable = [device for device in devices if not device.retry_after_seconds()]
    if not usable:
        audit_log(event="mfa.throttled", subject_user=user, ip=ip, data={"kind": Kind.TOTP})
        return Outcome(ok=False, retry_after=min(device.retry_after_seconds() for device in devices))
    for device in usable:
        step = _check_totp(device, code)
        if step is not None:
            _accept_totp(device, step)
            return Outcome(ok=True, methods=["otp"], factor_id=device.pk, user=user, device=device)
    for device in usable:
        device.throttle_increment()
    return Outcome(ok=False)


# --- backup codes ---------------------------------------------------------------------------


def normalize_backup_code(code: str) -> str:
    return "".join(ch for ch in (code or "").upper() if ch.isalnum())


def format_backup_code(code: str) -> str:
    half = len(code) // 2
    return f"{code[:half]}-{code[half:]}"


def _new_backup_code() -> str:
    return "".join(secrets.choice(BACKUP_CODE_ALPHABET) for _ in range(BACKUP_CODE_LENGTH))


@transaction.atomic
def backup_codes_generate(*, user: User, ip: str = "") -> list[str]:
    """Ten new codes (formatted "ABCDE-FGHJK"); every earlier code stops working.

    Only their keyed hashes are stored: the caller shows them once.
    """
    device, _created = BackupCodeDevice.objects.select_for_update().get_or_create(
        user=user, defaults={"name": str(Kind.BACKUP.label)[:FACTOR_NAME_MAX]}
    )
    device.codes.all().delete()
    codes: list[str] = []
    while len(codes) < BACKUP_CODE_COUNT:
        code = _new_backup_code()
        if code not in codes:
            codes.append(code)
    BackupCode.objects.bulk_create(BackupCode(device=device, code_hash=keyed_hash(code)) for code in codes)
    device.created_at = clock.now_dt()
    device.last_used_at = None
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.save(
        update_fields=[
            "created_at",
            "last_used_at",
            "throttling_failure_count",
            "throttling_failure_timestamp",
        ]
    )
    audit_log(event="mfa.backup_codes_generated", acting_user=user, subject_user=user, ip=ip)
    return [format_backup_code(code) for code in codes]


@transaction.atomic
def backup_code_use(*, user: User, code: str, ip: str = "") -> Outcome:
    """Spend one backup code (atomically: the set's row is locked) and tell the resident."""
    device = BackupCodeDevice.objects.select_for_update().filter(user=user).first()
    if device is None:
        return Outcome(ok=False)
    retry = device.retry_after_seconds()
    if retry:
        audit_log(event="mfa.throttled", subject_user=user, ip=ip, data={"kind": Kind.BACKUP})
        return Outcome(ok=False, retry_after=retry)
    normalized = normalize_backup_code(code)
    match = None
    if len(normalized) == BACKUP_CODE_LENGTH:
        match = device.codes.filter(code_hash=keyed_hash(normalized), used_at__isnull=True).first()
    if match is None:
        device.throttle_increment()
        return Outcome(ok=False)
    now = clock.now_dt()
    match.used_at = now
    match.save(update_fields=["used_at"])
    device.last_used_at = now
    device.throttling_failure_count = 0
    device.throttling_failure_timestamp = None
    device.save(update_fields=["last_used_at", "throttling_failure_count", "throttling_failure_timestamp"])
    remaining = device.codes.filter(used_at__isnull=True).count()
    audit_log(
        event="mfa.backup_code_used",
        subject_user=user,
        ip=ip,
        data={"factor_id": device.pk, "remaining": remaining},
    )
    _notify(user=user, template="mfa_backup_code_used", context={"remaining": remaining})
    return Outcome(ok=True, methods=["otp"], factor_id=device.pk, user=user, device=device)


# --- passkeys -------------------------------------------------------------------------------


def passkey_user_handle(*, user: User) -> bytes:
    """The resident's WebAuthn user handle: random, shared by all their passkeys (an
    authenticator keeps one credential per RP and user handle)."""
    from webauthn.helpers import base64url_to_bytes  # noqa: PLC0415 - identity/mfa/passkeys.py says why

    existing = Passkey.objects.filter(user=user).values_list("user_handle", flat=True).first()
    if existing:
        return base64url_to_bytes(existing)
    return secrets.token_bytes(32)


@transaction.atomic
def passkey_register(
    *, user: User, credential: Any, challenge: bytes, user_handle: bytes, name: str, ip: str = ""
) -> Passkey:
    """Verify the browser's attestation (format "none" accepted) and store the credential."""
    from webauthn.helpers import bytes_to_base64url  # noqa: PLC0415 - identity/mfa/passkeys.py says why
    from webauthn.helpers.structs import CredentialDeviceType  # noqa: PLC0415 - ditto

    verified = passkeys.verify_registration(credential=credential, challenge=challenge)
    name = (name or "").strip()[:FACTOR_NAME_MAX] or str(Kind.PASSKEY.label)
    try:
        with transaction.atomic():
            passkey = Passkey.objects.create(
                user=user,
                name=name,
                credential_id=bytes_to_base64url(verified.credential_id),
                public_key=verified.credential_public_key,
                sign_count=verified.sign_count,
                transports=passkeys.transports_of(credential),
                user_handle=bytes_to_base64url(user_handle),
                backup_eligible=verified.credential_device_type == CredentialDeviceType.MULTI_DEVICE,
                aaguid=str(verified.aaguid or "")[:36],
            )
    except IntegrityError as exc:
        raise FactorError("this passkey is already registered") from exc
    _factor_added(user=user, kind=Kind.PASSKEY, factor_id=passkey.pk, name=passkey.name, ip=ip)
    return passkey


@transaction.atomic
def passkey_authenticate(*, credential: Any, challenge: bytes, user: User | None, ip: str = "") -> Outcome:
    """Check an assertion. With `user`, the passkey must be theirs (second factor);
    without, any resident's discoverable passkey signs them in (passwordless).

    RFC 8176 methods on success: `hwk` (device-bound) or `swk` (synced), plus `mfa` when
    the authenticator verified the user (PIN or biometrics: something known or something
    one is, on top of possessing the key).
    """
    credential_id = passkeys.credential_id_of(credential)
    query = Passkey.objects.select_for_update().select_related("user").filter(credential_id=credential_id)
    if user is not None:
        query = query.filter(user=user)
    passkey = query.first()
    if passkey is None or not passkey.user.is_active:
        return Outcome(ok=False)
    if user is None:
        handle = passkeys.user_handle_of(credential)
        if handle and handle != passkey.user_handle:
            return Outcome(ok=False, user=passkey.user)
    try:
        new_count, user_verified, backed_up = passkeys.verify_assertion(
            credential=credential,
            challenge=challenge,
            public_key=bytes(passkey.public_key),
            sign_count=passkey.sign_count,
        )
    except passkeys.PasskeyError as exc:
        audit_log(
            event="mfa.passkey_rejected",
            subject_user=passkey.user,
            ip=ip,
            data={"factor_id": passkey.pk, "sign_count_regressed": "sign count" in str(exc)},
        )
        return Outcome(ok=False, user=passkey.user)
    passkey.sign_count = new_count
    passkey.last_used_at = clock.now_dt()
    fields = ["sign_count", "last_used_at"]
    if backed_up and not passkey.backup_eligible:
        passkey.backup_eligible = True
        fields.append("backup_eligible")
    passkey.save(update_fields=fields)
    methods = [passkey.amr_method]
    if user is None and user_verified:
        methods.append("mfa")
    return Outcome(ok=True, methods=methods, factor_id=passkey.pk, user=passkey.user, device=passkey)


# --- management -----------------------------------------------------------------------------

_MODELS: dict[str, Any] = {Kind.TOTP: TOTPDevice, Kind.PASSKEY: Passkey}


def _primary_factor_count(user: User) -> int:
    return (
        TOTPDevice.objects.filter(user=user, confirmed=True).count()
        + Passkey.objects.filter(user=user).count()
    )


@transaction.atomic
def factor_rename(*, user: User, kind: str, factor_id: int, name: str, ip: str = "") -> None:
    model = _MODELS.get(kind)
    name = (name or "").strip()[:FACTOR_NAME_MAX]
    if model is None or not name:
        raise FactorError("unknown factor")
    updated = model.objects.filter(pk=factor_id, user=user).update(name=name)
    if not updated:
        raise FactorError("unknown factor")
    audit_log(
        event="mfa.factor_renamed",
        acting_user=user,
        subject_user=user,
        ip=ip,
        data={"kind": kind, "factor_id": factor_id},
    )


def factor_is_last(*, user: User, kind: str, factor_id: int) -> bool:
    """Whether removing this factor would leave the resident with no second factor."""
    model = _MODELS.get(kind)
    if model is None or not model.objects.filter(pk=factor_id, user=user).exists():
        return False
    return _primary_factor_count(user) <= 1


@transaction.atomic
def factor_remove(*, user: User, kind: str, factor_id: int, ip: str = "") -> bool:
    """Remove a TOTP device or a passkey. When it was the last one, the backup codes go
    too: they exist to recover a second factor, not to be one on their own.

    Returns whether the resident is left without a second factor. The caller checks that
    removing the last factor follows a fresh sign-in.
    """
    model = _MODELS.get(kind)
    if model is None:
        raise FactorError("unknown factor")
    # Lock the resident's factors so two concurrent removals see each other.
    list(TOTPDevice.objects.select_for_update().filter(user=user))
    list(Passkey.objects.select_for_update().filter(user=user))
    factor = model.objects.filter(pk=factor_id, user=user).first()
    if factor is None or (kind == Kind.TOTP and not factor.confirmed):
        raise FactorError("unknown factor")
    name = factor.name
    factor.delete()
    last = _primary_factor_count(user) == 0
    if last:
        BackupCodeDevice.objects.filter(user=user).delete()
    audit_log(
        event="mfa.factor_removed",
        acting_user=user,
        subject_user=user,
        ip=ip,
        data={"kind": kind, "factor_id": factor_id, "last": last},
    )
    _notify(
        user=user,
        template="mfa_factor_removed",
        context={"kind": kind, "kind_label": Kind(kind).label, "factor_name": name, "last": last},
    )
    return last


# --- operator-assisted reset (lost second factor) -------------------------------------------

SUPPORT_GROUP = "support"
RESET_PERMISSION = "identity.reset_second_factor"
RESET_REASON_MAX = 200


def operator_can_reset_second_factor(operator: Any) -> bool:
    """Active staff in the "support" group (or holding the permission
    `identity.reset_second_factor`, should it be declared one day; superusers hold every
    permission)."""
    if operator is None or not getattr(operator, "is_authenticated", False):
        return False
    if not (operator.is_active and operator.is_staff):
        return False
    return operator.has_perm(RESET_PERMISSION) or operator.groups.filter(name=SUPPORT_GROUP).exists()


@dataclass
class ResetReport:
    totp: int
    passkeys: int
    backup_codes: bool
    sessions_ended: int


@transaction.atomic
def factors_reset(*, user: User, operator: User, reason: str, ip: str = "") -> ResetReport:
    """A support operator removes every second factor and backup code of a resident who lost
    theirs (after checking who they are, off-line). Every session of the resident ends,
    they are told by email, and the audit row names the operator (acting_user) and the
    resident (subject_user); the short reason is kept in the audit data, so it must not
    contain personal data.
    """

    if not operator_can_reset_second_factor(operator):
        raise PermissionDenied("this operator may not reset second factors")
    reason = " ".join((reason or "").split())
    if not reason:
        raise FactorError("a reason is required")
    if len(reason) > RESET_REASON_MAX:
        raise FactorError(f"the reason must fit in {RESET_REASON_MAX} characters")
    if operator.pk == user.pk:
        raise FactorError("an operator cannot reset their own second factor")
    list(TOTPDevice.objects.select_for_update().filter(user=user))
    list(Passkey.objects.select_for_update().filter(user=user))
    totp_count = TOTPDevice.objects.filter(user=user, confirmed=True).count()
    passkey_count = Passkey.objects.filter(user=user).count()
    backup_count = BackupCodeDevice.objects.filter(user=user).count()
    TOTPDevice.objects.filter(user=user).delete()  # unfinished enrolments too
    Passkey.objects.filter(user=user).delete()
    BackupCodeDevice.objects.filter(user=user).delete()  # and its codes (cascade)
    ended = sessions_end_all(user=user, reason="second_factor_reset", acting_user=operator, ip=ip)
    report = ResetReport(
        totp=totp_count, passkeys=passkey_count, backup_codes=backup_count > 0, sessions_ended=ended
    )
    audit_log(
        event="mfa.factors_reset",
        acting_user=operator,
        subject_user=user,
        ip=ip,
        data={
            "reason": reason,
            "totp": report.totp,
            "passkeys": report.passkeys,
            "backup_codes": report.backup_codes,
            "sessions_ended": ended,
        },
    )
    _notify(user=user, template="mfa_factors_reset", context={})
    return report


def login_passkey_failed(*, user: User | None, ip: str = "") -> None:
    """A passwordless passkey sign-in that did not succeed (unknown or rejected credential)."""
    audit_log(event="login.passkey_failed", subject_user=user, ip=ip)


@transaction.atomic
def factor_remove_reported(*, user: User, kind: str, factor_id: int, ip: str = "") -> bool:
    """Remove the factor a "this wasn't me" link points at (added by someone else).

    Like factor_remove, without the fresh sign-in (the resident proved the mailbox) and
    without an email (they are on the confirmation page). False if it is already gone.
    """
    model = _MODELS.get(kind)
    if model is None:
        return False
    list(TOTPDevice.objects.select_for_update().filter(user=user))
    list(Passkey.objects.select_for_update().filter(user=user))
    deleted, _ = model.objects.filter(pk=factor_id, user=user).delete()
    if not deleted:
        return False
    last = _primary_factor_count(user) == 0
    if last:
        BackupCodeDevice.objects.filter(user=user).delete()
    audit_log(
        event="mfa.factor_removed",
        acting_user=user,
        subject_user=user,
        ip=ip,
        data={"kind": kind, "factor_id": factor_id, "last": last, "reported_not_me": True},
    )
    return True


def login_second_factor_required(*, user: User, ip: str = "") -> None:
    """The password was right; the resident is asked for a second factor (not signed in)."""
    audit_log(event="login.second_factor_required", subject_user=user, ip=ip)


def login_second_factor_failed(*, user: User, kind: str, ip: str = "") -> None:
    audit_log(event="mfa.verify_failed", subject_user=user, ip=ip, data={"kind": kind})


def login_second_factor_succeeded(
    *, user: User, kind: str, factor_id: int | None, step_up: bool, ip: str = ""
) -> None:
    audit_log(
        event="mfa.verify_succeeded",
        subject_user=user,
        ip=ip,
        data={"kind": kind, "factor_id": factor_id, "step_up": step_up},
    )
