"""Residents' data-rights requests: the export (GDPR Art. 15 and 20) today.

The flow (docs/architecture.md, "Rights requests"):

1. `export_request` (the resident, on /compte/export/, after a fresh sign-in): one
   transaction writes the `RightsRequest` (state "waiting"), its outbox message (kind
   `rights.export`) and the audit row. A second request while one is waiting or running
   returns that one; more than RIGHTS_EXPORT_MAX_PER_DAY in 24 hours is refused.
2. `export_build` (the outbox worker, never a web request): state "running", every rights
   provider's section (`consent.rights.rights_export`), the zip (consent.export_archive),
   encrypted at rest in the row (AES-256-GCM, bound to the row's id); state "done", a fresh
   download secret whose keyed hash is kept, `expires_at` (RIGHTS_EXPORT_DOWNLOAD_DAYS), the
   email with the link (identity.emails, through the outbox) and a second outbox message
   (`rights.export_expire`) due at `expires_at` that deletes the archive if still there.
   Any error: state "failed" (the page says so; the resident may ask again).
3. `export_download` (the resident, signed in AND holding the email's link): once. The
   archive bytes are deleted at the first download, or at expiry.

Progress: `progress["providers"]` gives each provider's state ("done" today). The seam for
partners' data (issue 11): a provider that must wait for a partner would be recorded
"pending"; the request would stay "running" and be completed when the partner answers
(a later outbox message), the archive being built once no provider is pending.

The outbox lives above consent (docs/architecture.md, "Layers"): the connectors app
registers the queue here (`register_queue`) and the handlers that call `export_build` and
`export_expire`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidTag
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.urls import reverse
from django.utils import timezone

from common.crypto import decrypt_at_rest, encrypt_at_rest, generate_secret, keyed_hash
from consent.export_archive import archive_build
from consent.models import RightsRequest, RightsRequestKind, RightsRequestState
from consent.rights import rights_export
from identity.audit import audit_log
from identity.emails import absolute_url, send_email
from identity.models import User

log = logging.getLogger(__name__)

KIND_EXPORT = "rights.export"
KIND_EXPORT_EXPIRE = "rights.export_expire"
OPEN_STATES = (RightsRequestState.WAITING, RightsRequestState.RUNNING)
PROVIDER_DONE = "done"
PROVIDER_PENDING = "pending"  # the seam for partners' data (module docstring)
ARCHIVE_FILENAME = "mes-donnees-compte-unique.zip"

# (*, kind, request_id, not_before) -> Any: puts a message in the outbox, caller's transaction.
RightsQueue = Callable[..., Any]
_queue: RightsQueue | None = None


class ExportFailed(RuntimeError):
    """Building the archive failed: the request is marked "failed" (no personal data here)."""


def register_queue(queue: RightsQueue) -> None:
    """Called from the connectors app's ready(): how a rights request reaches the worker."""
    global _queue
    _queue = queue


def _enqueue(*, kind: str, request_id: Any, not_before: datetime | None = None) -> None:
    if _queue is None:
        raise ImproperlyConfigured("no rights queue registered: is the connectors app installed?")
    _queue(kind=kind, request_id=str(request_id), not_before=not_before)


def _archive_context(request_id: Any) -> bytes:
    # Bound as associated data: an archive copied to another row does not open.
    return b"cum rights export v1:" + str(request_id).encode()


# --- asking ------------------------------------------------------------------------------


@dataclass(frozen=True)
class ExportRequestOutcome:
    request: RightsRequest | None
    created: bool = False
    throttled: bool = False


def export_request(*, user: User, ip: str = "") -> ExportRequestOutcome:
    """The resident asks for a copy of their data: the request and its outbox message, in
    one transaction. An open request (waiting or running) is returned instead of a new one."""
    now = timezone.now()
    with transaction.atomic():
        # Serialises two requests of the same resident (double click, two tabs).
        User.objects.select_for_update().filter(pk=user.pk).first()
        mine = RightsRequest.objects.filter(user=user, kind=RightsRequestKind.EXPORT)
        current = mine.filter(state__in=OPEN_STATES).first()
        if current is not None:
            return ExportRequestOutcome(request=current)
        recent = mine.filter(requested_at__gte=now - timedelta(days=1)).count()
        if recent >= settings.RIGHTS_EXPORT_MAX_PER_DAY:
            return ExportRequestOutcome(request=None, throttled=True)
        request = RightsRequest.objects.create(
            user=user,
            kind=RightsRequestKind.EXPORT,
            requested_at=now,
            not_before=now,
            language=user.preferred_language or settings.LANGUAGE_CODE,
            progress={"providers": {}},
        )
        _enqueue(kind=KIND_EXPORT, request_id=request.pk)
        audit_log(
            event="rights.export_requested",
            acting_user=user,
            subject_user=user,
            ip=ip,
            data={"request": str(request.pk)},
        )
    return ExportRequestOutcome(request=request, created=True)


# --- the worker --------------------------------------------------------------------------


def _start(request_id: Any) -> RightsRequest | None:
    with transaction.atomic():
        request = (
            RightsRequest.objects.select_for_update()
            .filter(pk=request_id, kind=RightsRequestKind.EXPORT, state__in=OPEN_STATES)
            .first()
        )
        if request is None:
            return None  # done, failed or cancelled already: a repeated delivery does nothing
        request.state = RightsRequestState.RUNNING
        request.started_at = request.started_at or timezone.now()
        request.save(update_fields=["state", "started_at"])
        return request


def export_build(*, request_id: Any) -> None:
    """Outbox handler's work (kind `rights.export`): build, encrypt and store the archive,
    email the link. Raises ExportFailed (after marking the request "failed") on any error."""
    request = _start(request_id)
    if request is None:
        return
    try:
        if request.user is None:
            raise ExportFailed("the account no longer exists")
        _build_and_store(request, request.user)
    except Exception as exc:
        export_fail(request_id=request_id, reason=type(exc).__name__)
        raise ExportFailed(type(exc).__name__) from exc


def _build_and_store(request: RightsRequest, user: User) -> None:
    envelope = rights_export(user)
    progress = {"providers": {name: {"state": PROVIDER_DONE} for name in envelope["sections"]}}
    archive = archive_build(envelope, language=request.language)
    secret = generate_secret()
    now = timezone.now()
    expires_at = now + timedelta(days=settings.RIGHTS_EXPORT_DOWNLOAD_DAYS)
    with transaction.atomic():
        locked = RightsRequest.objects.select_for_update().filter(pk=request.pk).first()
        if locked is None or locked.state != RightsRequestState.RUNNING:
            return
        locked.archive = encrypt_at_rest(archive, context=_archive_context(locked.pk))
        locked.archive_size = len(archive)
        locked.token_hash = keyed_hash(secret)
        locked.expires_at = expires_at
        locked.completed_at = now
        locked.state = RightsRequestState.DONE
        locked.progress = progress
        locked.save(
            update_fields=[
                "archive",
                "archive_size",
                "token_hash",
                "expires_at",
                "completed_at",
                "state",
                "progress",
            ]
        )
        _enqueue(kind=KIND_EXPORT_EXPIRE, request_id=locked.pk, not_before=expires_at)
        send_email(
            to=user.email,
            template="rights_export_ready",
            context={
                "given_name": user.given_name,
                "download_url": absolute_url(reverse("consent:export-download", args=[secret])),
                "expires_at": expires_at,
                "days": settings.RIGHTS_EXPORT_DOWNLOAD_DAYS,
            },
            language=locked.language,
        )
        audit_log(event="rights.export_ready", subject_user=user, data={"request": str(locked.pk)})


def export_fail(*, request_id: Any, reason: str) -> None:
    """Mark an export "failed" (the resident sees it and may ask again); no archive kept."""
    with transaction.atomic():
        request = RightsRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None:
            return
        request.state = RightsRequestState.FAILED
        request.completed_at = timezone.now()
        request.archive = None
        request.archive_size = 0
        request.progress = {**(request.progress or {}), "error": reason[:100]}
        request.save(update_fields=["state", "completed_at", "archive", "archive_size", "progress"])
        audit_log(
            event="rights.export_failed",
            subject_user=request.user,
            data={"request": str(request.pk), "reason": reason[:100]},
        )
    log.warning("rights export %s failed: %s", request_id, reason)


def export_expire(*, request_id: Any) -> bool:
    """Outbox handler's work (kind `rights.export_expire`, due at `expires_at`): delete the
    archive of an export whose link expired. True if bytes were deleted."""
    with transaction.atomic():
        request = RightsRequest.objects.select_for_update().filter(pk=request_id).first()
        if request is None or request.archive is None:
            return False
        if request.expires_at is not None and request.expires_at > timezone.now():
            return False
        _forget_archive(request)
        return True


def _forget_archive(request: RightsRequest) -> None:
    request.archive = None
    request.save(update_fields=["archive"])


# --- downloading -------------------------------------------------------------------------


class DownloadStatus:
    OK = "ok"
    NOT_FOUND = "not_found"
    USED = "used"
    EXPIRED = "expired"
    NOT_READY = "not_ready"


@dataclass(frozen=True)
class DownloadOutcome:
    status: str
    data: bytes = b""
    filename: str = ARCHIVE_FILENAME


def export_for_token(*, user: User, token: str) -> RightsRequest | None:
    """The resident's export whose emailed link holds `token` (None for anyone else)."""
    if not token or len(token) > 200:
        return None
    return RightsRequest.objects.filter(
        user=user, kind=RightsRequestKind.EXPORT, token_hash=keyed_hash(token)
    ).first()


def download_status(request: RightsRequest, now: datetime | None = None) -> str:
    if request.state != RightsRequestState.DONE:
        return DownloadStatus.NOT_READY
    if request.downloaded_at is not None:
        return DownloadStatus.USED
    if request.expires_at is None or request.expires_at <= (now or timezone.now()):
        return DownloadStatus.EXPIRED
    return DownloadStatus.OK


def export_download(*, user: User, token: str, ip: str = "") -> DownloadOutcome:
    """The archive, once: the resident signed in AND holding the emailed link's secret. The
    bytes are deleted from the database as they are handed out (or found expired)."""
    found = export_for_token(user=user, token=token)
    if found is None:
        return DownloadOutcome(status=DownloadStatus.NOT_FOUND)
    with transaction.atomic():
        request = RightsRequest.objects.select_for_update().get(pk=found.pk)
        status = download_status(request)
        if status != DownloadStatus.OK or request.archive is None:
            if request.archive is not None and status == DownloadStatus.EXPIRED:
                _forget_archive(request)
            return DownloadOutcome(status=status if status != DownloadStatus.OK else DownloadStatus.EXPIRED)
        try:
            data = decrypt_at_rest(bytes(request.archive), context=_archive_context(request.pk))
        except InvalidTag:
            # KEY_ENCRYPTION_KEY rotated since, or the row was altered: nothing to hand out.
            log.warning("rights export %s: the archive does not decrypt", request.pk)
            request.archive = None
            request.expires_at = timezone.now()  # the link is spent: the page says "expired"
            request.save(update_fields=["archive", "expires_at"])
            return DownloadOutcome(status=DownloadStatus.EXPIRED)
        request.downloaded_at = timezone.now()
        request.archive = None
        request.save(update_fields=["downloaded_at", "archive"])
        audit_log(
            event="rights.export_downloaded",
            acting_user=user,
            subject_user=user,
            ip=ip,
            data={"request": str(request.pk)},
        )
    return DownloadOutcome(status=DownloadStatus.OK, data=data)
