"""Reads of the consent app: the gate, current states, events, proofs and ledger verification.

Public API:

The gate (claims release, profiles, browsing ingestion, connectors) lives in consent.gate
(its docstring gives the semantics); these are re-exported here:
- `consent_is_granted(*, user, purpose_code, at=None) -> bool`
- `consent_is_granted_for_browser(*, browser_id, purpose_code, at=None) -> bool`
- `granted_purpose_codes(*, user) -> set[str]`

For the resident's pages, the cookie API and the DPO console:
- `purposes_catalogue(*, include_inactive=False)`, `purpose_by_code(code)`,
  `notice_current(*, purpose)`
- `consent_states_for_user(*, user) -> list[ConsentStateView]`
- `browser_consent_states(*, browser_id) -> dict[str, str]` (purpose code -> status)
- `events_search(*, user=None, purpose_code=None, partner_client_id=None, since=None,
  until=None, event_types=None) -> QuerySet[LedgerEvent]` (DPO console; log staff reads)
- `event_by_id(event_id)`, `event_details(event) -> dict | None` (decrypts; personal data)
- `events_check(queryset)`: raises `LedgerTampered` (naming the positions) when a stored row
  the queryset selects is malformed or altered; readers that show, export or sign rows call
  it first, since the ORM's conversion of a malformed value raises (issue 9, finding 10)
- `processing_register(language="fr") -> list[dict]` (GDPR Art. 30, from the catalogue)
- `privacy_policy_purposes(*, language="fr") -> list[PolicyPurpose]` (the public privacy
  policy: active purposes with their current notice)
- `resident_purposes(*, user, language="fr") -> list[ResidentPurpose]` (the metropolis' own
  purposes with the resident's state and history: "Consentements")
- `notice_versions(*, purpose) -> list[PrivacyNotice]` (every version that applied, oldest first)
- `resident_consent_counts(*, user) -> (granted, renewal)` (Mon compte's summary line)
- `partner_consents_for_user(*, user) -> list[PartnerConsent]` (the resident's decisions on
  the purposes of partner clients, with the grant behind each: "Services connectés")

Proofs and verification:
- `latest_tree_head()`, `tree_heads()`, `verify_tree_head(head) -> bool`
- `inclusion_proof(*, leaf_index, tree_size) -> list[bytes]`
- `consistency_proof(*, first, second) -> list[bytes]`
- `event_proof(*, event, tree_head=None) -> dict` (JSON-ready bundle for downloads)
- `ledger_verify(*, progress=None, progress_every=10_000, jobs=1) -> LedgerVerification`
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db.models import Q, QuerySet
from django.utils import timezone

from consent import crypto, gate, ledger, merkle
from consent.models import (
    GRANTING_EVENTS,
    ConsentState,
    EventType,
    LedgerEvent,
    PrivacyNotice,
    Purpose,
    RightsRequest,
    RightsRequestKind,
    Subject,
    SubjectKind,
    TreeHead,
)
from consent.services import UnknownPurpose, browser_id_hash, current_notice
from identity.models import User

# --- The gate (consent.gate), re-exported -----------------------------------------------------

consent_is_granted = gate.consent_is_granted
consent_is_granted_for_browser = gate.consent_is_granted_for_browser
granted_purpose_codes = gate.granted_purpose_codes


# --- Catalogue, states, events ---------------------------------------------------------------


def purposes_catalogue(*, include_inactive: bool = False) -> QuerySet[Purpose]:
    qs = Purpose.objects.select_related("client").order_by("client_id", "code")
    return qs if include_inactive else qs.filter(is_active=True)


def purpose_by_code(code: str) -> Purpose:
    purpose = Purpose.objects.filter(code=code).first()
    if purpose is None:
        raise UnknownPurpose(f"unknown purpose {code!r}")
    return purpose


def notice_current(*, purpose: Purpose) -> PrivacyNotice | None:
    return current_notice(purpose)


def notice_latest(*, purpose: Purpose | None) -> PrivacyNotice | None:
    """The latest version of a purpose's own notice (`purpose=None`: of the global notice),
    without falling back to the global one as `notice_current` does."""
    return PrivacyNotice.objects.filter(purpose=purpose).order_by("-version").first()


def purpose_exists(code: str) -> bool:
    return Purpose.objects.filter(code=code).exists()


def category_labels(purpose: Purpose, *, english: bool) -> list[str]:
    """The purpose's data categories as readers see them, in their language."""
    return [
        str(category.get("en" if english else "fr") or category.get("code", ""))
        for category in purpose.data_categories
        if isinstance(category, dict)
    ]


@dataclass(frozen=True)
class ConsentStateView:
    purpose_code: str
    status: str
    granted: bool
    valid_until: datetime | None
    renewal_required: bool
    event_id: uuid.UUID
    decided_at: datetime


def consent_states_for_user(*, user: User) -> list[ConsentStateView]:
    now = timezone.now()
    states = ConsentState.objects.filter(
        subject__user_id=user.pk, subject__kind=SubjectKind.ACCOUNT
    ).select_related("purpose", "event")
    return [
        ConsentStateView(
            purpose_code=state.purpose.code,
            status=state.status,
            granted=state.status in GRANTING_EVENTS
            and not state.renewal_required
            and (state.valid_until is None or state.valid_until > now),
            valid_until=state.valid_until,
            renewal_required=state.renewal_required,
            event_id=state.event_id,
            decided_at=state.event.occurred_at,
        )
        for state in states.order_by("purpose__code")
    ]


def browser_hashes_for_user(*, user: User) -> list[str]:
    """The id hashes of the browsers attached to this account with their proof."""
    hashes = Subject.objects.filter(user_id=user.pk, kind=SubjectKind.BROWSER).values_list(
        "browser_id_hash", flat=True
    )
    return [value for value in hashes if value]


def browser_account_id(*, browser_hash: str) -> Any:
    """The id of the account this browser was attached to with its proof, or None."""
    return (
        Subject.objects.filter(browser_id_hash=browser_hash, kind=SubjectKind.BROWSER, user__isnull=False)
        .values_list("user_id", flat=True)
        .first()
    )


def browser_consent_states(*, browser_id: str) -> dict[str, str]:
    """Purpose code -> current status for a browser (expired decisions left out)."""
    now = timezone.now()
    states = ConsentState.objects.filter(
        Q(valid_until__isnull=True) | Q(valid_until__gt=now),
        subject__browser_id_hash=browser_id_hash(browser_id),
    ).values_list("purpose__code", "status", "renewal_required")
    return {code: ("renewal_required" if renewal else status) for code, status, renewal in states}


def events_search(
    *,
    user: User | None = None,
    purpose_code: str | None = None,
    partner_client_id: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    event_types: list[str] | None = None,
) -> QuerySet[LedgerEvent]:
    """Ledger events matching every given criterion, in ledger order (DPO console/API)."""
    qs = LedgerEvent.objects.all()
    if user is not None:
        qs = qs.filter(subject__user_id=user.pk)
    if purpose_code:
        qs = qs.filter(purpose_code=purpose_code)
    if partner_client_id:
        qs = qs.filter(partner_client_id=partner_client_id)
    if since is not None:
        qs = qs.filter(occurred_at__gte=since)
    if until is not None:
        qs = qs.filter(occurred_at__lt=until)
    if event_types:
        unknown = set(event_types) - set(EventType.values)
        if unknown:
            raise ValueError(f"unknown event types {sorted(unknown)}")
        qs = qs.filter(event_type__in=event_types)
    return qs.order_by("seq")


def events_problems(queryset: QuerySet[LedgerEvent]) -> list[LedgerProblem]:
    """The problems of the stored rows `queryset` selects (a slice: those of the slice), read
    raw and parsed as the verifier does (consent.ledger.rows_check). [] when all are sound."""
    if queryset.query.is_empty():
        return []
    sql, params = queryset.values("pk").query.sql_with_params()
    return ledger.rows_check(sql, params)


def events_check(queryset: QuerySet[LedgerEvent]) -> None:
    """Raise `LedgerTampered` if a stored row selected by `queryset` is malformed or altered."""
    problems = events_problems(queryset)
    if problems:
        raise LedgerTampered(problems)


def event_by_id(event_id: uuid.UUID | str) -> LedgerEvent | None:
    """The event, or None; raises `LedgerTampered` if its stored row is malformed or altered."""
    try:
        key = event_id if isinstance(event_id, uuid.UUID) else uuid.UUID(str(event_id))
    except ValueError:
        return None
    selection = LedgerEvent.objects.filter(pk=key)
    events_check(selection)
    return selection.first()


def event_details(event: LedgerEvent) -> dict[str, Any] | None:
    """Decrypted personal details of an event (None if it has none).

    Raises `consent.crypto.KeyDestroyed` once the subject was erased. Callers showing this
    to staff must log the read (every staff read of personal data is logged: docs/security.md).
    """
    if not event.details_ciphertext:
        return None
    subject = Subject.objects.only("id", "wrapped_key").get(pk=event.subject_id)
    data_key = crypto.unwrap_key(subject.wrapped_key, subject.id)
    try:
        return crypto.decrypt_details(
            data_key, event.details_ciphertext, event_id=event.id, subject_id=subject.id
        )
    except crypto.DecryptionFailed as exc:
        # The subject key unwrapped: the details or the ids they are bound to were altered.
        raise LedgerTampered(
            [
                ledger.LedgerProblem(
                    kind="altered",
                    seq=event.seq,
                    event_id=str(event.id),
                    detail=f"event #{event.seq} ({event.id}) was altered: its encrypted details "
                    "do not authenticate",
                )
            ]
        ) from exc


def processing_register(language: str = "fr") -> list[dict[str, Any]]:
    """Records of processing (GDPR Art. 30) generated from the purpose catalogue."""
    english = language == "en"
    rows = []
    for purpose in purposes_catalogue(include_inactive=False):
        rows.append(
            {
                "code": purpose.code,
                "title": purpose.title_en if english else purpose.title_fr,
                "description": purpose.description_en if english else purpose.description_fr,
                "lawful_basis": {"gdpr": purpose.gdpr_article, "dpv": purpose.dpv_legal_basis},
                "dpv_purpose": purpose.dpv_purpose,
                "data_categories": purpose.data_categories,
                "special_categories": purpose.special_categories,
                "recipients": purpose.recipients,
                "retention_days": purpose.retention_days,
                "consent_lifetime_days": purpose.consent_lifetime_days,
                "requires_consent": purpose.requires_consent,
                "partner_client_id": purpose.client.client_id if purpose.client is not None else None,
            }
        )
    return rows


# --- Proofs ----------------------------------------------------------------------------------


# How many of the largest signed tree heads proofs and pages read (one index range): the
# latest well-formed one is among them unless that many rows were altered (then all are read).
LATEST_HEADS = 8
# Processes `manage.py verify_ledger` scans the log with by default (consent.ledger.verify).
VERIFY_JOBS = ledger.VERIFY_JOBS


def latest_tree_head() -> TreeHead | None:
    """The latest well-formed signed tree head. Rows altered in the database are skipped here
    (`ledger_verify` reports them): pages and APIs showing the head never fail on them."""
    heads, _problems = ledger.tree_heads_read(latest=LATEST_HEADS)
    return heads[-1] if heads else None


def tree_heads() -> QuerySet[TreeHead]:
    return TreeHead.objects.order_by("tree_size", "timestamp", "id")


def verify_tree_head(head: TreeHead) -> bool:
    """The signature verifies with a published key and signs exactly this size, root and time."""
    return ledger.tree_head_check(head) == ""


def inclusion_proof(*, leaf_index: int, tree_size: int) -> list[bytes]:
    """RFC 9162 inclusion proof (audit path) of leaf `leaf_index` in the tree of `tree_size`."""
    return ledger.inclusion_proof(leaf_index, tree_size)


def consistency_proof(*, first: int, second: int) -> list[bytes]:
    """RFC 9162 consistency proof between the trees of sizes `first` <= `second`."""
    return ledger.consistency_proof(first, second)


def event_proof(*, event: LedgerEvent, tree_head: TreeHead | None = None) -> dict[str, Any]:
    """Everything needed to check an event offline: entry, leaf hash, audit path, signed head.

    Uses the latest well-formed signed tree head covering the event unless one is given;
    raises `ledger.ProofError` if none covers it yet: the event is pending until the sequencer's
    next batch signs a head over it (or `services.tree_head_sign()`, which integrates first).
    The proof is checked before it is returned: if the stored hashes it is built from (the
    interior Merkle nodes, the neighbours' leaf hashes) are malformed or do not lead to the
    signed root, or the head's signature does not verify, it raises `LedgerTampered` instead
    of handing out a proof that would not verify.
    """
    if tree_head is None:
        # Heads only grow: if none of the latest covers the event, no older one does.
        heads, _problems = ledger.tree_heads_read(latest=LATEST_HEADS)
        covering = [head for head in heads if head.tree_size > event.seq]
        tree_head = covering[-1] if covering else None
    if tree_head is None or tree_head.tree_size <= event.seq:
        raise ledger.ProofError("no signed tree head covers this event yet")

    def tampered(reason: str) -> LedgerTampered:
        return LedgerTampered(
            [
                ledger.LedgerProblem(
                    kind="altered",
                    seq=event.seq,
                    event_id=str(event.id),
                    tree_head_id=tree_head.pk,
                    detail=f"no valid proof for event #{event.seq} ({event.id}) against signed tree head "
                    f"{tree_head.pk} (size {tree_head.tree_size}): {reason}",
                )
            ]
        )

    try:
        path = ledger.inclusion_proof(event.seq, tree_head.tree_size)
    except ledger.ProofError:
        raise
    except (TypeError, ValueError) as exc:
        raise tampered(f"a stored Merkle node or leaf hash is malformed ({type(exc).__name__})") from exc
    if any(len(digest) != merkle.HASH_SIZE for digest in path):
        raise tampered("a stored Merkle node or leaf hash is malformed (wrong length)")
    if not merkle.verify_inclusion(
        bytes(event.leaf_hash), event.seq, tree_head.tree_size, path, bytes(tree_head.root_hash)
    ):
        raise tampered("the stored Merkle nodes on its path do not lead to the signed root")
    reason = ledger.tree_head_check(tree_head)
    if reason:
        raise tampered(f"the tree head's signature does not hold ({reason})")
    return {
        "log_id": ledger.log_id(),
        "leaf_index": event.seq,
        "entry": ledger.event_entry_bytes(event).decode("utf-8"),
        "leaf_hash": bytes(event.leaf_hash).hex(),
        "tree_size": tree_head.tree_size,
        "root_hash": bytes(tree_head.root_hash).hex(),
        "inclusion_path": [digest.hex() for digest in path],
        "signed_tree_head": tree_head.signature,
    }


# --- Whole-ledger verification ---------------------------------------------------------------


# The report types live with the verifier (consent.ledger); re-exported here for callers.
LedgerProblem = ledger.LedgerProblem
LedgerVerification = ledger.LedgerVerification
LedgerTampered = ledger.LedgerTampered


def ledger_verify(
    *,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 10_000,
    max_problems: int = 100,
    chunk_size: int = 2_000,
    jobs: int = 1,
) -> LedgerVerification:
    """Recompute every leaf and the tree from the stored rows and check every signed tree head.

    Never raises: every malformed or altered value is a problem of the report, named by the
    event's position (consent.ledger.verify, which reads the rows raw and parses each column).
    `jobs` > 1 scans ranges of the log in that many processes on PostgreSQL (outside a
    transaction; `manage.py verify_ledger --jobs`); the report is the same whatever `jobs` is.
    """
    return ledger.verify(
        progress=progress,
        progress_every=progress_every,
        max_problems=max_problems,
        chunk_size=chunk_size,
        jobs=jobs,
    )


def browser_seen_by_client(*, browser_id: str, client_id: str) -> bool:
    """Whether this browser id made a cookie choice on that partner's site.

    The sign-in flow attaches a browser's choices to an account only then, so that a
    partner cannot graft another site's visitor history onto a resident.
    """
    return LedgerEvent.objects.filter(
        subject__browser_id_hash=browser_id_hash(browser_id),
        subject__kind=SubjectKind.BROWSER,
        partner_client_id=client_id,
    ).exists()


# --- The public privacy policy (/confidentialite/) --------------------------------------------


@dataclass(frozen=True)
class PolicyPurpose:
    """One active purpose of the catalogue as the public privacy policy shows it."""

    code: str
    title: str
    description: str
    gdpr_article: str
    requires_consent: bool
    data_categories: list[str]
    recipients: list[str]
    retention_days: int | None
    consent_lifetime_days: int | None
    partner_name: str | None
    notice_version: int | None
    notice_published_at: datetime | None
    notice_sha256: str


def privacy_policy_purposes(*, language: str = "fr") -> list[PolicyPurpose]:
    """Every active purpose with its current notice, in the reader's language: the metropolis'
    own purposes first, then the sharing purposes grouped by partner."""
    english = language == "en"
    notices = list(
        PrivacyNotice.objects.filter(Q(purpose__is_active=True) | Q(purpose__isnull=True)).order_by(
            "-published_at", "-id"
        )
    )
    result = []
    for purpose in purposes_catalogue(include_inactive=False):
        notice = next((n for n in notices if n.purpose_id in (purpose.pk, None)), None)
        result.append(
            PolicyPurpose(
                code=purpose.code,
                title=purpose.title(language),
                description=purpose.description_en if english else purpose.description_fr,
                gdpr_article=purpose.gdpr_article,
                requires_consent=purpose.requires_consent,
                data_categories=category_labels(purpose, english=english),
                recipients=[str(recipient) for recipient in purpose.recipients],
                retention_days=purpose.retention_days,
                consent_lifetime_days=purpose.consent_lifetime_days,
                partner_name=purpose.client.name if purpose.client is not None else None,
                notice_version=notice.version if notice else None,
                notice_published_at=notice.published_at if notice else None,
                notice_sha256=notice.content_sha256 if notice else "",
            )
        )
    result.sort(
        key=lambda entry: (entry.partner_name is not None, (entry.partner_name or "").casefold(), entry.title)
    )
    return result


# --- A resident's consents to partner clients (Mon compte, "Services connectés") -------------


@dataclass(frozen=True)
class PartnerConsent:
    """One purpose of a partner client as it stands for a resident, with the grants behind it.

    `client_key` is the partner purpose's key as its caller stored it (consent never reads
    it). `grant_*` name the last granting event (`given`/`renewed`): the consent the partner
    received data under; `first_given_at` is when the resident first allowed this purpose.
    """

    purpose_code: str
    client_pk: Any
    client_key: str
    requires_consent: bool
    status: str
    # The current decision is a grant (given/renewed) of a purpose still in the catalogue,
    # whether or not it lapsed since.
    grant_standing: bool
    granted: bool
    decided_at: datetime
    event_id: uuid.UUID
    notice_version: int | None
    first_given_at: datetime | None
    grant_event_id: uuid.UUID | None
    grant_at: datetime | None
    grant_notice_version: int | None


def partner_consents_for_user(*, user: User) -> list[PartnerConsent]:
    """The resident's current decision on every purpose tied to a partner client, oldest first.

    Raises `LedgerTampered` (nothing shown) when a stored event of the resident's account is
    malformed or altered: the page would show, and the receipts sign, altered data.
    """
    events = LedgerEvent.objects.filter(
        subject__user_id=user.pk, subject__kind=SubjectKind.ACCOUNT, purpose__client__isnull=False
    )
    events_check(events)
    grants: dict[int, list[tuple[uuid.UUID, datetime, int | None, str]]] = {}
    for purpose_id, event_id, occurred_at, notice_version, event_type in (
        events.filter(event_type__in=GRANTING_EVENTS)
        .order_by("seq")
        .values_list("purpose_id", "id", "occurred_at", "notice_version", "event_type")
    ):
        grants.setdefault(purpose_id, []).append((event_id, occurred_at, notice_version, event_type))
    now = timezone.now()
    states = (
        ConsentState.objects.filter(
            subject__user_id=user.pk, subject__kind=SubjectKind.ACCOUNT, purpose__client__isnull=False
        )
        .select_related("purpose", "event")
        .order_by("event__seq")
    )
    result = []
    for state in states:
        purpose_grants = grants.get(state.purpose_id, [])
        given = [grant for grant in purpose_grants if grant[3] == EventType.GIVEN]
        last = purpose_grants[-1] if purpose_grants else None
        result.append(
            PartnerConsent(
                purpose_code=state.purpose.code,
                client_pk=state.purpose.client_id,
                client_key=state.purpose.client_key,
                requires_consent=state.purpose.requires_consent,
                status=state.status,
                grant_standing=state.purpose.is_active and state.status in GRANTING_EVENTS,
                granted=state.purpose.is_active
                and state.status in GRANTING_EVENTS
                and not state.renewal_required
                and (state.valid_until is None or state.valid_until > now),
                decided_at=state.event.occurred_at,
                event_id=state.event_id,
                notice_version=state.event.notice_version,
                first_given_at=given[0][1] if given else None,
                grant_event_id=last[0] if last else None,
                grant_at=last[1] if last else None,
                grant_notice_version=last[2] if last else None,
            )
        )
    return result


# --- A resident's consents to the metropolis' own purposes (Mon compte, "Consentements") -----


@dataclass(frozen=True)
class ResidentEvent:
    """One event of the resident's history for a purpose, as the account page shows it."""

    id: uuid.UUID
    seq: int
    event_type: str
    occurred_at: datetime
    valid_until: datetime | None
    collection_method: str
    actor_type: str
    notice_id: int | None
    notice_version: int | None
    # A well-formed signed tree head covers the event: its inclusion proof can be downloaded.
    proof_available: bool


@dataclass(frozen=True)
class ResidentPurpose:
    """One active purpose of the metropolis' own catalogue and where the resident stands.

    `state` is one of "granted", "renewal_required" (a material notice came after the grant),
    "expired", "refused", "withdrawn", "revoked", "never" (no decision, or only asked);
    `granted` is the gate's answer. `events` is the resident's history, newest first.
    """

    code: str
    title: str
    description: str
    gdpr_article: str
    requires_consent: bool
    data_categories: list[str]
    retention_days: int | None
    consent_lifetime_days: int | None
    state: str
    granted: bool
    valid_until: datetime | None
    decided_at: datetime | None
    notice_version: int | None
    notice_global: bool
    events: list[ResidentEvent]


def _resident_state(state: ConsentState | None, now: datetime) -> str:
    if state is None or state.status == EventType.REQUESTED:
        return "never"
    if state.status in GRANTING_EVENTS:
        if state.renewal_required:
            return "renewal_required"
        if state.valid_until is not None and state.valid_until <= now:
            return "expired"
        return "granted"
    return str(state.status)


def resident_purposes(*, user: User, language: str = "fr") -> list[ResidentPurpose]:
    """Every active purpose of the metropolis' own (no partner's sharing purpose), with the
    resident's current state and history. Raises `LedgerTampered` (nothing shown) when a
    stored event of the resident's account is malformed or altered."""
    english = language == "en"
    events = LedgerEvent.objects.filter(
        subject__user_id=user.pk, subject__kind=SubjectKind.ACCOUNT, purpose__client__isnull=True
    )
    events_check(events)
    head = latest_tree_head()
    covered = head.tree_size if head is not None else 0
    history: dict[int, list[ResidentEvent]] = {}
    for row in events.order_by("-seq").values(
        "purpose_id",
        "id",
        "seq",
        "event_type",
        "occurred_at",
        "valid_until",
        "collection_method",
        "actor_type",
        "notice_id",
        "notice_version",
    ):
        purpose_id = row.pop("purpose_id")
        history.setdefault(purpose_id, []).append(ResidentEvent(**row, proof_available=row["seq"] < covered))
    states = {
        state.purpose_id: state
        for state in ConsentState.objects.filter(
            subject__user_id=user.pk, subject__kind=SubjectKind.ACCOUNT, purpose__client__isnull=True
        ).select_related("event")
    }
    now = timezone.now()
    result = []
    for purpose in purposes_catalogue().filter(client__isnull=True).order_by("-requires_consent", "code"):
        state = states.get(purpose.pk)
        notice = current_notice(purpose)
        label = _resident_state(state, now)
        result.append(
            ResidentPurpose(
                code=purpose.code,
                title=purpose.title(language),
                description=purpose.description_en if english else purpose.description_fr,
                gdpr_article=purpose.gdpr_article,
                requires_consent=purpose.requires_consent,
                data_categories=category_labels(purpose, english=english),
                retention_days=purpose.retention_days,
                consent_lifetime_days=purpose.consent_lifetime_days,
                state=label,
                granted=label == "granted",
                valid_until=state.valid_until if state is not None else None,
                decided_at=state.event.occurred_at if state is not None else None,
                notice_version=notice.version if notice is not None else None,
                notice_global=notice is not None and notice.purpose_id is None,
                events=history.get(purpose.pk, []),
            )
        )
    return result


def notice_versions(*, purpose: Purpose) -> list[PrivacyNotice]:
    """Every notice version that applied to `purpose` (its own and the global one's), oldest
    first: at any time the latest published of them is the one a decision is taken under."""
    notices = PrivacyNotice.objects.filter(Q(purpose=purpose) | Q(purpose__isnull=True))
    return list(notices.order_by("published_at", "id"))


def resident_consent_counts(*, user: User) -> tuple[int, int]:
    """(granted now, waiting for renewal) among the metropolis' own consent-based purposes:
    the summary line of Mon compte. Reads the current-state rows only (one query)."""
    now = timezone.now()
    granted = renewal = 0
    for renewal_required, valid_until in ConsentState.objects.filter(
        subject__user_id=user.pk,
        subject__kind=SubjectKind.ACCOUNT,
        purpose__client__isnull=True,
        purpose__is_active=True,
        purpose__requires_consent=True,
        status__in=GRANTING_EVENTS,
    ).values_list("renewal_required", "valid_until"):
        if renewal_required:
            renewal += 1
        elif valid_until is None or valid_until > now:
            granted += 1
    return granted, renewal


# --- rights requests -----------------------------------------------------------------------


def export_latest(user: User) -> RightsRequest | None:
    """The resident's most recent export request (the export page shows its state)."""
    return (
        RightsRequest.objects.filter(user=user, kind=RightsRequestKind.EXPORT)
        .order_by("-requested_at")
        .defer("archive")
        .first()
    )
