"""Residents' data-rights requests: the export (GDPR Art. 15 and 20).

The flow (docs/architecture.md, "Rights requests"):

1. `export_request` (the resident, on /compte/export/, after a fresh sign-in): one
   transaction writes the `RightsRequest` (state "waiting"), its outbox message (kind
   `rights.export`), the audit row, and one `rights.partner_export` message per partner
   that has a connector and knows the resident (the partners `consent.erasure.partners_of`
   finds, with the details `consent.erasure.partner_details` gives them: the sealed card
   numbers and the partner's `sub`). With partners, the build message is due
   RIGHTS_EXPORT_PARTNER_WAIT seconds later, or as soon as every partner's answer is recorded
   (`partner_export_record` queues it again then). A second request while one is waiting or
   running returns that one; more than RIGHTS_EXPORT_MAX_PER_DAY in 24 hours is refused.
2. Each partner's answer (connectors/rights_export.py) is recorded by `partner_export_record`:
   `progress["partners"][client_id]` = {state, at, detail} with state answered, requested
   (asked by email: an operator records the answer later), refused, not_supported or failed;
   the data, per source (the connector kind), encrypted at rest in `RightsPartnerData`.
3. `export_build` (the outbox worker, never a web request): state "running", every rights
   provider's section (`consent.rights.rights_export`) plus `partners` (each partner's state
   and the data that arrived; partners still pending are listed with their state), the zip
   (consent.export_archive), encrypted at rest in the row (AES-256-GCM, bound to the row's id);
   state "done", a fresh download secret whose keyed hash is kept, `expires_at`
   (RIGHTS_EXPORT_DOWNLOAD_DAYS), the email with the link (identity.emails, through the
   outbox) and a `rights.export_expire` message due at `expires_at` that deletes the archive
   if still there. Any error: state "failed" (the page says so; the resident may ask again).
4. A partner's data arriving after the build (`rights.export_update`, `export_update`): the
   archive is rebuilt with it as a new version, whether the previous one was downloaded,
   expired or not yet: a new one-time link valid RIGHTS_EXPORT_DOWNLOAD_DAYS from now, emailed
   to the resident; the previous link stops working (the new version holds everything it
   held). Only data makes a new version; a refusal or a failure is shown on the page.
5. `export_download` (the resident, signed in AND holding the email's link): once. The
   archive bytes are deleted at the first download, or at expiry. The partners' data goes
   with them unless a partner may still answer (state "requested") within the one-month
   deadline: then it is kept, encrypted, to rebuild the archive when that answer comes.

The outbox lives above consent (docs/architecture.md, "Layers"): the connectors app
registers the queues here (`register_queue`, `register_partner_queue`) and the handlers.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
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
from consent import erasure
from consent.export_archive import archive_build
from consent.models import RightsPartnerData, RightsRequest, RightsRequestKind, RightsRequestState
from consent.rights import rights_export
from identity.audit import audit_log
from identity.emails import absolute_url, send_email
from identity.models import User

log = logging.getLogger(__name__)

KIND_EXPORT = "rights.export"
KIND_EXPORT_EXPIRE = "rights.export_expire"
KIND_EXPORT_UPDATE = "rights.export_update"
KIND_PARTNER_EXPORT = "rights.partner_export"
OPEN_STATES = (RightsRequestState.WAITING, RightsRequestState.RUNNING)
PROVIDER_DONE = "done"
ARCHIVE_FILENAME = "mes-donnees-compte-unique.zip"
MAX_REPLACED_TOKENS = 10

# A partner's answer to an export (progress["partners"][client_id]["state"]).
PARTNER_ANSWERED = "answered"
PARTNER_REQUESTED = erasure.PARTNER_REQUESTED  # not answered yet (asked, or asked by email)
PARTNER_REFUSED = "refused"
PARTNER_NOT_SUPPORTED = "not_supported"
PARTNER_FAILED = "failed"
PARTNER_STATES = (PARTNER_ANSWERED, PARTNER_REQUESTED, PARTNER_REFUSED, PARTNER_NOT_SUPPORTED, PARTNER_FAILED)

# (*, kind, request_id, not_before, step) -> Any: puts a message in the outbox, caller's
# transaction; `step` makes the idempotency key of a repeated kind unique ("" for the first).
RightsQueue = Callable[..., Any]
_queue: RightsQueue | None = None
# (*, request_id, client_id, details) -> Any: the partner's export message, caller's transaction.
PartnerQueue = Callable[..., Any]
_partner_queue: PartnerQueue | None = None


class ExportFailed(RuntimeError):
    """Building the archive failed: the request is marked "failed" (no personal data here)."""


def register_queue(queue: RightsQueue) -> None:
    """Called from the connectors app's ready(): how a rights request reaches the worker."""
    global _queue
    _queue = queue


def register_partner_queue(queue: PartnerQueue) -> None:
    """Called from the connectors app's ready(): how an export reaches each partner."""
    global _partner_queue
    _partner_queue = queue


def _enqueue(*, kind: str, request_id: Any, not_before: datetime | None = None, step: str = "") -> None:
    if _queue is None:
        raise ImproperlyConfigured("no rights queue registered: is the connectors app installed?")
    _queue(kind=kind, request_id=str(request_id), not_before=not_before, step=step)


def _archive_context(request_id: Any) -> bytes:
    # Bound as associated data: an archive copied to another row does not open.
    return b"cum rights export v1:" + str(request_id).encode()


def _partner_data_context(request_id: Any, client_id: str, source: str) -> bytes:
    return f"cum rights partner data v1:{request_id}:{client_id}:{source}".encode()


def export_partners(user: User) -> dict[str, dict[str, Any]]:
    """The partners an export asks, with what their message carries: those that know the
    resident (consent.erasure.partners_of: sessions, consents, links) AND have a connector
    (the connectors app's partner details: every partner with a connector has its `subject`)."""
    if _partner_queue is None:
        return {}
    details = erasure.partner_details(user)
    return {client_id: details[client_id] for client_id in erasure.partners_of(user) if client_id in details}


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
        partners = export_partners(user)
        request = RightsRequest.objects.create(
            user=user,
            kind=RightsRequestKind.EXPORT,
            requested_at=now,
            not_before=now,
            language=user.preferred_language or settings.LANGUAGE_CODE,
            progress={
                "providers": {},
                "partners": {client_id: {"state": PARTNER_REQUESTED} for client_id in partners},
            },
        )
        for client_id, details in partners.items():
            assert _partner_queue is not None  # export_partners is empty without it
            _partner_queue(request_id=str(request.pk), client_id=client_id, details=details)
        # Without partners, at once; with partners, when all answered or after the wait.
        wait = timedelta(seconds=settings.RIGHTS_EXPORT_PARTNER_WAIT) if partners else timedelta(0)
        _enqueue(kind=KIND_EXPORT, request_id=request.pk, not_before=now + wait)
        audit_log(
            event="rights.export_requested",
            acting_user=user,
            subject_user=user,
            ip=ip,
            data={"request": str(request.pk), "partners": len(partners)},
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


def _data_rows(request: RightsRequest) -> list[RightsPartnerData]:
    return list(RightsPartnerData.objects.filter(request=request).order_by("client_id", "source"))


def _mark(row: RightsPartnerData) -> str:
    # What an archive holds of a partner's data: a newer answer of the same source is new.
    return f"{row.client_id}:{row.source}:{row.received_at.isoformat()}"


def _open_data(row: RightsPartnerData) -> Any:
    try:
        return json.loads(
            decrypt_at_rest(
                bytes(row.data), context=_partner_data_context(row.request_id, row.client_id, row.source)
            )
        )
    except (InvalidTag, ValueError):
        log.warning("rights export %s: a partner's data does not decrypt", row.request_id)
        return None


def _partners_section(request: RightsRequest) -> tuple[list[dict[str, Any]], list[str]]:
    """The archive's `partners`: each partner asked, its state (its answer, else where its
    message stands: queued, failing, dead_letter), and its data by source. And the marks of
    the data included (`progress["archived"]`)."""
    rows = _data_rows(request)
    data: dict[str, dict[str, Any]] = {}
    marks = []
    for row in rows:
        value = _open_data(row)
        if value is not None:
            data.setdefault(row.client_id, {})[row.source] = value
            marks.append(_mark(row))
    section = [
        {
            "partner": status.client_id,
            "name": status.name,
            "state": status.state,
            "at": status.at.isoformat() if status.at else None,
            "detail": status.detail,
            "data": data.get(status.client_id, {}),
        }
        for status in erasure.partners_states([request])[request.pk]
    ]
    return section, marks


def _build_and_store(request: RightsRequest, user: User, *, update: bool = False) -> bool:
    """Build the archive (a new version when `update`), store it encrypted, email the link.
    False when the request changed meanwhile (nothing stored)."""
    envelope = rights_export(user)
    envelope["partners"], marks = _partners_section(request)
    archive = archive_build(envelope, language=request.language)
    secret = generate_secret()
    now = timezone.now()
    expires_at = now + timedelta(days=settings.RIGHTS_EXPORT_DOWNLOAD_DAYS)
    expected = RightsRequestState.DONE if update else RightsRequestState.RUNNING
    with transaction.atomic():
        locked = RightsRequest.objects.select_for_update().filter(pk=request.pk).first()
        if locked is None or locked.state != expected:
            return False
        version = int((locked.progress or {}).get("version", 0)) + 1
        # The previous version's link stops working; kept (keyed hash) to say why (REPLACED).
        replaced = list((locked.progress or {}).get("replaced_tokens", []))
        if update and locked.token_hash:
            replaced = [*replaced, locked.token_hash][-MAX_REPLACED_TOKENS:]
        locked.archive = encrypt_at_rest(archive, context=_archive_context(locked.pk))
        locked.archive_size = len(archive)
        locked.token_hash = keyed_hash(secret)
        locked.expires_at = expires_at
        locked.completed_at = now
        locked.downloaded_at = None
        locked.state = RightsRequestState.DONE
        locked.progress = {
            **(locked.progress or {}),
            "providers": {name: {"state": PROVIDER_DONE} for name in envelope["sections"]},
            "archived": marks,
            "version": version,
            **({"replaced_tokens": replaced} if replaced else {}),
        }
        locked.save(
            update_fields=[
                "archive",
                "archive_size",
                "token_hash",
                "expires_at",
                "completed_at",
                "downloaded_at",
                "state",
                "progress",
            ]
        )
        _enqueue(
            kind=KIND_EXPORT_EXPIRE,
            request_id=locked.pk,
            not_before=expires_at,
            step="" if version == 1 else f"v{version}",
        )
        send_email(
            to=user.email,
            template="rights_export_updated" if update else "rights_export_ready",
            context={
                "given_name": user.given_name,
                "download_url": absolute_url(reverse("consent:export-download", args=[secret])),
                "expires_at": expires_at,
                "days": settings.RIGHTS_EXPORT_DOWNLOAD_DAYS,
            },
            language=locked.language,
        )
        audit_log(
            event="rights.export_updated" if update else "rights.export_ready",
            subject_user=user,
            data={"request": str(locked.pk), "version": version},
        )
    return True


# --- partners' answers ---------------------------------------------------------------------------


def partner_export_record(
    *,
    request_id: Any,
    client_id: str,
    state: str,
    data: Mapping[str, Any] | None = None,
    detail: str = "",
) -> bool:
    """A partner's answer to an export (the connectors' handler, or an operator recording an
    email answer): its state in the progress, its data by source encrypted. Then: every
    partner answered while the archive waits → build now; data after the build → a new
    version (`rights.export_update`). False when the request no longer takes answers
    (failed, cancelled, the account erased): nothing stored."""
    if state not in PARTNER_STATES:
        raise ValueError(f"unknown partner state {state!r}")
    with transaction.atomic():
        request = (
            RightsRequest.objects.select_for_update()
            .filter(pk=request_id, kind=RightsRequestKind.EXPORT, user__isnull=False)
            .first()
        )
        if request is None or request.state not in (*OPEN_STATES, RightsRequestState.DONE):
            return False
        now = timezone.now()
        progress = dict(request.progress or {})
        partners = dict(progress.get("partners", {}))
        partners[client_id] = {
            "state": state,
            "at": now.isoformat(),
            **({"detail": detail[:300]} if detail else {}),
        }
        progress["partners"] = partners
        request.progress = progress
        request.save(update_fields=["progress"])
        for source, value in (data or {}).items():
            blob = encrypt_at_rest(
                json.dumps(value, ensure_ascii=False).encode(),
                context=_partner_data_context(request.pk, client_id, source),
            )
            RightsPartnerData.objects.update_or_create(
                request=request,
                client_id=client_id,
                source=source,
                defaults={"data": blob, "received_at": now},
            )
        if request.state in OPEN_STATES and all(
            isinstance(answer, dict) and answer.get("at") for answer in partners.values()
        ):
            _enqueue(kind=KIND_EXPORT, request_id=request.pk, step="partners-answered")
        if data and request.state != RightsRequestState.WAITING:
            # Running: the build may have read the partners already; done: a new version.
            _enqueue(kind=KIND_EXPORT_UPDATE, request_id=request.pk, step=uuid.uuid4().hex)
    return True


def export_takes_answers(*, request_id: Any) -> bool:
    """Whether a partner's answer to this export would still be recorded (not failed or
    cancelled, the account not erased): the partner is not asked otherwise."""
    return RightsRequest.objects.filter(
        pk=request_id,
        kind=RightsRequestKind.EXPORT,
        user__isnull=False,
        state__in=(*OPEN_STATES, RightsRequestState.DONE),
    ).exists()


class UpdateOutcome:
    REBUILT = "rebuilt"
    NOTHING = "nothing"
    NOT_READY = "not_ready"  # the first build still runs: try again later


def export_update(*, request_id: Any) -> str:
    """Outbox handler's work (kind `rights.export_update`): rebuild the archive as a new version
    when partner data arrived that it does not hold (module docstring, step 4)."""
    request = RightsRequest.objects.filter(pk=request_id, kind=RightsRequestKind.EXPORT).first()
    if request is None or request.user is None:
        return UpdateOutcome.NOTHING
    if request.state in OPEN_STATES:
        return UpdateOutcome.NOT_READY
    if request.state != RightsRequestState.DONE:
        return UpdateOutcome.NOTHING
    archived = set((request.progress or {}).get("archived", []))
    if {_mark(row) for row in _data_rows(request)} <= archived:
        return UpdateOutcome.NOTHING  # an earlier update took it in already
    try:
        rebuilt = _build_and_store(request, request.user, update=True)
    except Exception as exc:
        # The previous version stays as it was; the message is retried by the outbox.
        log.warning("rights export %s: rebuilding failed: %s", request_id, type(exc).__name__)
        raise
    return UpdateOutcome.REBUILT if rebuilt else UpdateOutcome.NOTHING


def export_partner_states(request: RightsRequest) -> list[erasure.PartnerStatus]:
    """Each partner of an export, its answer or where its message stands (the resident's page)."""
    return erasure.partners_states([request])[request.pk]


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
        RightsPartnerData.objects.filter(request=request).delete()
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
        if request is None:
            return False
        if request.archive is None:
            # Downloaded or expired already: the partners' data kept for a late answer goes
            # once the deadline passed (the message queued for then by _forget_partner_data).
            _forget_partner_data(request)
            return False
        if request.expires_at is not None and request.expires_at > timezone.now():
            return False
        _forget_archive(request)
        return True


def _forget_archive(request: RightsRequest) -> None:
    request.archive = None
    request.save(update_fields=["archive"])
    _forget_partner_data(request)


def _forget_partner_data(request: RightsRequest) -> None:
    """The partners' data goes with the archive, unless a partner may still answer within the
    deadline: then it is kept (encrypted) to rebuild the archive with that answer."""
    partners = (request.progress or {}).get("partners", {}) or {}
    waiting = any(
        isinstance(answer, dict) and answer.get("state") == PARTNER_REQUESTED for answer in partners.values()
    )
    if not waiting or timezone.now() > request.deadline:
        RightsPartnerData.objects.filter(request=request).delete()
    elif RightsPartnerData.objects.filter(request=request).exists():
        # Kept for a late answer: deleted at the deadline if none came (the same expiry kind).
        _enqueue(kind=KIND_EXPORT_EXPIRE, request_id=request.pk, not_before=request.deadline, step="deadline")


# --- downloading -------------------------------------------------------------------------


class DownloadStatus:
    OK = "ok"
    NOT_FOUND = "not_found"
    USED = "used"
    EXPIRED = "expired"
    NOT_READY = "not_ready"
    REPLACED = "replaced"  # the link of a previous version: a newer one was emailed


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


def export_replaced(*, user: User, token: str) -> RightsRequest | None:
    """The resident's export whose previous version's link holds `token` (a newer version
    replaced it: its link was emailed). The resident's few exports are read, not searched."""
    if not token or len(token) > 200:
        return None
    hashed = keyed_hash(token)
    for request in RightsRequest.objects.filter(user=user, kind=RightsRequestKind.EXPORT).defer("archive"):
        if hashed in ((request.progress or {}).get("replaced_tokens") or []):
            return request
    return None


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
        _forget_partner_data(request)
        audit_log(
            event="rights.export_downloaded",
            acting_user=user,
            subject_user=user,
            ip=ip,
            data={"request": str(request.pk)},
        )
    return DownloadOutcome(status=DownloadStatus.OK, data=data)
