"""The Merkle log stored in the database: leaf entries, appends, proofs, tree-head signatures.

Internal to the consent app: other apps go through `consent.services` / `consent.selectors`.

Leaf entry. The leaf hash of event #seq is SHA-256(0x00 || entry) where `entry` is the
canonical JSON (UTF-8, keys sorted, no spaces) of the row's non-secret columns, the
encrypted details included as base64 — see `ENTRY_COLUMNS` and `entry_bytes`. Everything
that enters the hash is a plain column of `consent_ledgerevent`, so `verify_ledger` can
recompute each leaf from the row alone.

A sequenced log, as Certificate Transparency logs and Trillian run theirs:

- An append (`append`) writes the event row with its leaf index and leaf hash in the
  caller's transaction (the gate sees it at once). The leaf index comes from a counter row
  (`LedgerSequence`) taken at the very end of the append (UPDATE ... RETURNING): its row
  lock is held only while the event row is inserted and the transaction commits, never
  while the caller reads, checks, encrypts. The counter is transactional (a rolled-back
  append leaves no gap), so events commit in sequence order. Writers read the `LedgerHead`
  row under a shared lock (FOR KEY SHARE) and check it (`head_check`), which the operations
  that must exclude every append (FOR UPDATE, `lock_head`) wait for.
- The sequencer (`integrate`) puts the pending events (seq >= the head's size) into the
  Merkle tree in batches: one locked read of the head (FOR NO KEY UPDATE, compatible with
  the writers' shared lock), every pending row checked as `verify` checks it (`rows_check`),
  the frontier extended (O(log n) hashes per event), the completed interior nodes inserted,
  one head update and one signed tree head per batch. It runs in the outbox worker
  (connectors' `outbox_worker`), in `manage.py ledger_sequencer`, and on demand before any
  read that needs a proof of a pending event (`tree_head_sign`, `selectors.event_proof`).
  SQLite transactions are IMMEDIATE (one writer at a time): the same code, no concurrency.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import json
import logging
import re
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, overload
from zoneinfo import ZoneInfo

import psycopg
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Count, signals
from django.db.models.base import ModelState
from django.db.models.functions import TruncDate
from django.utils import timezone
from jwcrypto import jws
from jwcrypto.common import JWException, json_encode

from common import metrics
from consent import merkle
from consent.models import (
    ActorType,
    CollectionMethod,
    DailyCount,
    EventType,
    LedgerEvent,
    LedgerHead,
    MerkleNode,
    TreeHead,
)
from consent.prepared import prepared_fetch
from identity.keys import active_signing_key, verification_key

log = logging.getLogger(__name__)

ENTRY_VERSION = 1
# Columns of consent_ledgerevent that make up the leaf entry, in `values_list` order.
ENTRY_COLUMNS = (
    "id",
    "seq",
    "event_type",
    "subject_id",
    "purpose_code",
    "notice_id",
    "notice_version",
    "notice_sha256",
    "collection_method",
    "actor_type",
    "actor_id",
    "partner_client_id",
    "occurred_at",
    "valid_until",
    "linked_from",
    "details_ciphertext",
)
TREE_HEAD_TYPE = "consent-sth+jwt"


def log_id() -> str:
    return f"{settings.ISSUER}/consent-ledger"


def format_time(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def entry_dict(row: Mapping[str, Any]) -> dict[str, Any]:
    ciphertext = row["details_ciphertext"]
    linked_from = row["linked_from"]
    notice_id = row["notice_id"]
    return {
        "v": ENTRY_VERSION,
        "id": str(row["id"]),
        "seq": int(row["seq"]),
        "type": row["event_type"],
        "subject": str(row["subject_id"]),
        "purpose": row["purpose_code"],
        "notice": None
        if notice_id is None
        else {"id": int(notice_id), "version": row["notice_version"], "sha256": row["notice_sha256"]},
        "method": row["collection_method"],
        "actor": {"type": row["actor_type"], "id": row["actor_id"]},
        "partner": row["partner_client_id"] or None,
        "at": format_time(row["occurred_at"]),
        "valid_until": format_time(row["valid_until"]),
        "linked_from": str(linked_from) if linked_from else None,
        "details": base64.b64encode(bytes(ciphertext)).decode() if ciphertext else None,
    }


def canonical_json(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def entry_bytes(row: Mapping[str, Any]) -> bytes:
    return canonical_json(entry_dict(row))


def event_row(event: LedgerEvent) -> dict[str, Any]:
    return {column: getattr(event, column) for column in ENTRY_COLUMNS}


def event_entry_bytes(event: LedgerEvent) -> bytes:
    return entry_bytes(event_row(event))


# --- Head and appends ------------------------------------------------------------------------


def _split_frontier(blob: bytes) -> list[bytes]:
    blob = bytes(blob)
    return [blob[i : i + merkle.HASH_SIZE] for i in range(0, len(blob), merkle.HASH_SIZE)]


def lock_head() -> LedgerHead:
    """The head row, locked exclusively (FOR UPDATE) until the end of the current transaction:
    waits for the appends in flight (their FOR KEY SHARE) and the sequencer, holds off new ones."""
    try:
        return LedgerHead.objects.select_for_update().get(pk=1)
    except LedgerHead.DoesNotExist:
        # Normally created by migration 0003; a flushed test database lacks it.
        LedgerHead.objects.bulk_create(
            [LedgerHead(pk=1, size=0, root_hash=merkle.EMPTY_ROOT, frontier=b"")], ignore_conflicts=True
        )
        return LedgerHead.objects.select_for_update().get(pk=1)


def writer_head(*, subject_lock: int | None = None) -> LedgerHead:
    """The head row, read by an append under a shared row lock (FOR KEY SHARE on PostgreSQL:
    writers do not wait for one another, nor for the sequencer; `lock_head` waits for them).

    `subject_lock` (PostgreSQL): the key of a transaction-level advisory lock taken in the same
    statement, *after* the head row's lock (`consent_writer_head`, migration consent 0012, locks
    the row, then takes the advisory lock), so that the order of the locks stays head first, then
    the subject: the operations that lock the head exclusively and then a subject (`lock_head`
    holders appending) cannot deadlock with an append. The caller's next statement sees
    whatever the subject's previous holder committed (a new snapshot per statement)."""
    for _ in range(2):
        head = head_of_row(prepared_fetch(*writer_head_statement(subject_lock=subject_lock)))
        if head is not None:
            return head
        _head_create()
    raise LedgerTampered(
        [LedgerProblem(kind="head", detail="nothing appended: the ledger head row is missing")]
    )


def writer_head_statement(*, subject_lock: int | None = None) -> tuple[str, list[Any]]:
    """`writer_head`'s statement (sql, params), for a caller that runs it with the next one in
    one round trip (consent_record: `consent.prepared.fetch_in_turn`) and reads its row with
    `head_of_row` (None: the head row is missing, then `writer_head()` creates it)."""
    if connection.vendor == "postgresql":
        return _WRITER_HEAD_LOCKING_SQL, [subject_lock]
    return _WRITER_HEAD_SQL, []


def model_instance(model: Any, values: dict[str, Any]) -> Any:
    """`model(**values)` (attribute names) without `Model.__init__`, which walks every field of
    the model and sends pre_init/post_init for each instance (about a tenth of an append's
    client CPU for its instances, issue 14): a new instance whose other fields keep their
    defaults when `defaults` (`_defaults`) are merged in by the caller, or stay deferred (read
    from the database if ever used, as after `.only()`). Falls back to `__init__` when a
    pre_init or post_init receiver listens to the model."""
    if signals.pre_init.has_listeners(model) or signals.post_init.has_listeners(model):
        return model(**values)
    instance = model.__new__(model)
    instance._state = ModelState()
    instance.__dict__.update(values)
    return instance


def head_of_row(found: Sequence[Any] | None) -> LedgerHead | None:
    """The head as `writer_head` returns it, from its statement's row (None when there was none)."""
    if found is None:
        return None
    size, root, frontier, behind_nodes, behind_heads = found[:5]
    # The row's columns the append uses (updated_at, not read, stays deferred).
    head: LedgerHead = model_instance(
        LedgerHead, {"id": 1, "size": size, "root_hash": root, "frontier": frontier}
    )
    head._state.adding, head._state.db = False, connection.alias
    # `_position_check`, done here in the same snapshot: `append` raises on it.
    head._position_behind = bool(behind_nodes or behind_heads)  # type: ignore[attr-defined]
    return head


# The head row with `_position_check`'s two tests (one statement, one snapshot); bytea columns
# arrive as bytes (PostgreSQL) or bytes (SQLite): `head_check` checks their type and length.
_WRITER_HEAD_SQL = (
    "SELECT h.size, h.root_hash, h.frontier, "
    'EXISTS (SELECT 1 FROM consent_merklenode n WHERE n.level = 1 AND n."index" = h.size / 2) AS nodes, '
    "EXISTS (SELECT 1 FROM consent_treehead t WHERE t.tree_size > h.size) AS heads "
    "FROM consent_ledgerhead h WHERE h.id = 1"
)
# PostgreSQL: the same query under FOR KEY SHARE, then the subject's advisory lock once the head
# row is locked (none when the key is NULL), in the PL/pgSQL function of migration consent 0012,
# whose plans PostgreSQL keeps per connection whatever the pooler (no named prepared statement):
# parsing and planning the query at each append cost more than running it (issue 14).
# tests/consent/test_append_path.py checks the order of the locks and compares its rows with
# `_WRITER_HEAD_SQL`'s.
_WRITER_HEAD_LOCKING_SQL = (
    "SELECT size, root_hash, frontier, nodes, heads FROM consent_writer_head(%s::bigint)"
)


def _head_create() -> None:
    # Normally created by migration 0003; a flushed test database lacks it.
    LedgerHead.objects.bulk_create(
        [LedgerHead(pk=1, size=0, root_hash=merkle.EMPTY_ROOT, frontier=b"")], ignore_conflicts=True
    )


def read_head() -> LedgerHead:
    head = LedgerHead.objects.filter(pk=1).first()
    return head or LedgerHead(pk=1, size=0, root_hash=merkle.EMPTY_ROOT, frontier=b"")


def head_check(head: LedgerHead, *, refused: str = "nothing appended") -> tuple[int, list[bytes]]:
    """(size, frontier) of the locked head row, checked before an append extends it: the size
    a non-negative integer, the frontier one 32-byte hash per perfect subtree (one per bit of
    the size), the root the one the frontier gives. Pure Python on the one row already read
    (at most log2(n) hashes), so the append path stays as fast. Raises LedgerTampered: an
    append over a corrupted frontier would extend, and a later tree head sign, garbage. A head
    altered consistently (size, frontier and root together) passes; `verify` catches it, and
    an append at a position already held is refused by `append`."""
    size, frontier, root = head.size, head.frontier, head.root_hash
    reason = ""
    if type(size) is not int or size < 0:
        reason = f"size is not a non-negative integer ({_show(size)})"
    elif not isinstance(frontier, bytes | memoryview) or len(frontier) != merkle.HASH_SIZE * size.bit_count():
        reason = f"the frontier does not fit a tree of {size} events ({_show(frontier)})"
    elif not isinstance(root, bytes | memoryview) or len(root) != merkle.HASH_SIZE:
        reason = f"root_hash is not a {merkle.HASH_SIZE}-byte hash ({_show(root)})"
    else:
        hashes = _split_frontier(frontier)
        if merkle.frontier_root(hashes) != bytes(root):
            reason = "its root is not the root of its frontier"
        else:
            return size, hashes
    position = size if type(size) is int and size >= 0 else None
    raise LedgerTampered(
        [
            LedgerProblem(
                kind="head",
                seq=position,
                detail=f"{refused}: the ledger head row is malformed ({reason})",
            )
        ]
    )


_TAKE_SEQ_SQL = (
    "UPDATE consent_ledgersequence SET next_seq = next_seq + 1 WHERE id = 1 RETURNING next_seq - 1"
)
# A flushed test database (or one migrated before the counter) lacks the row: it starts after
# the stored events. WHERE true: SQLite's parser needs it before ON CONFLICT in INSERT ... SELECT.
_SEQUENCE_CREATE_SQL = (
    "INSERT INTO consent_ledgersequence (id, next_seq) "
    "SELECT 1, COALESCE(MAX(seq) + 1, 0) FROM consent_ledgerevent WHERE true ON CONFLICT (id) DO NOTHING"
)


def _sequence_create() -> None:
    """The counter row, when it is missing (a flushed test database)."""
    with connection.cursor() as cursor:
        cursor.execute(_SEQUENCE_CREATE_SQL)


def _seq_check(seq: Any, size: int) -> int:
    """The leaf index the counter gave, which must be an integer at or past the head's size."""
    if type(seq) is not int or seq < size:
        raise LedgerTampered(
            [
                LedgerProblem(
                    kind="head",
                    seq=size,
                    detail=f"nothing appended: the leaf-index counter ({_show(seq)}) is behind the ledger "
                    f"head ({size} events integrated)",
                )
            ]
        )
    return seq


def _take_seq(size: int) -> int:
    """The next leaf index, from the counter row (locked until the end of the transaction)."""
    with connection.cursor() as cursor:
        cursor.execute(_TAKE_SEQ_SQL)
        row = cursor.fetchone()
        if row is None:
            cursor.execute(_SEQUENCE_CREATE_SQL)
            cursor.execute(_TAKE_SEQ_SQL)
            row = cursor.fetchone()
    seq = row[0] if row is not None else None
    return _seq_check(seq, size)


# The head row against what the sequencer stores with it, in one statement (one snapshot: a
# batch integrated meanwhile commits its head, nodes and tree head together): no interior node
# above the next leaf, no signed tree head beyond the head's size. Index lookups only.
_POSITION_SQL = (
    'SELECT EXISTS (SELECT 1 FROM consent_merklenode n WHERE n.level = 1 AND n."index" = h.size / 2), '
    "EXISTS (SELECT 1 FROM consent_treehead t WHERE t.tree_size > h.size) "
    "FROM consent_ledgerhead h WHERE h.id = 1"
)


def _position_check() -> None:
    """Raise LedgerTampered when the head row names a size behind the tree already stored (its
    size, frontier and root altered together): appending there would extend a rewound tree."""
    with connection.cursor() as cursor:
        cursor.execute(_POSITION_SQL)
        row = cursor.fetchone()
    if row is not None and (row[0] or row[1]):
        _position_raise()


def _writer_size(head: LedgerHead) -> int:
    """The head's size for an append, once no Merkle node or signed head lies beyond it (checked
    by `writer_head`'s statement when it ran there, here otherwise)."""
    size, _frontier = head_check(head)
    behind = getattr(head, "_position_behind", None)
    if behind is None:
        _position_check()
    elif behind:
        _position_raise()
    return size


def _position_raise() -> None:
    raise LedgerTampered(
        [
            LedgerProblem(
                kind="head",
                detail="nothing appended: the ledger head row names a size behind the Merkle nodes "
                "or signed tree heads already stored",
            )
        ]
    )


# consent_record's write of the current state of (subject, purpose) after an event: one upsert
# on its unique pair (`append(..., with_state=True)`; migration consent 0012 writes the same one).
STATE_UPSERT_SQL = (
    "INSERT INTO consent_consentstate "
    "(subject_id, purpose_id, status, event_id, valid_until, renewal_required, updated_at) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (subject_id, purpose_id) DO UPDATE SET "
    "status = excluded.status, event_id = excluded.event_id, valid_until = excluded.valid_until, "
    "renewal_required = excluded.renewal_required, updated_at = excluded.updated_at"
)


def append(head: LedgerHead, event: LedgerEvent, *, with_state: bool = False) -> LedgerEvent:
    """Give `event` the next leaf index, hash it and insert it: pending until the sequencer
    (`integrate`) puts it into the Merkle tree.

    The caller read `head` with `writer_head()` (or holds `lock_head()`) inside a transaction,
    and appends last: the leaf-index counter stays locked from here to the commit. Raises
    LedgerTampered (the caller's transaction then rolls back: nothing written) when the head
    row is malformed (`head_check`), the counter is behind it, or the index is already held.

    `with_state`: the event also becomes the current state of its (subject, purpose), as
    consent_record needs (STATE_UPSERT_SQL, the upsert of the event's subject, purpose, type, id,
    validity and time, as `services._state_write` gives it), committed with the event. On
    PostgreSQL the state's upsert, the counter and the event's INSERT are one call of
    `consent_append_event`, which writes the same upsert from the event's columns
    (`_append_one_statement`: the upsert's parameters are never built in Python there);
    elsewhere they run one after the other, in that order.
    """
    size = _writer_size(head)
    try:
        if connection.vendor == "postgresql":
            _append_one_statement(event, size, with_state)
        else:
            if with_state:
                with connection.cursor() as cursor:
                    cursor.execute(STATE_UPSERT_SQL, _state_params(event))
            event.seq = _take_seq(size)
            event.leaf_hash = merkle.leaf_hash(event_entry_bytes(event))
            _event_insert(event)
    except IntegrityError as exc:
        # The counter is behind the stored events: it was altered.
        raise LedgerTampered(
            [
                LedgerProblem(
                    kind="head",
                    seq=event.seq,
                    detail="nothing appended: the leaf-index counter names "
                    + (f"position #{event.seq}" if event.seq is not None else "a position")
                    + ", which a stored event already holds",
                )
            ]
        ) from exc
    # Counted once committed (a rolled-back append is no event): /metrics, common/metrics.py.
    kind, purpose_code = str(event.event_type), event.purpose_code
    transaction.on_commit(lambda: metrics.CONSENT_EVENTS.labels(kind, purpose_code).inc())
    return event


# Where the entry's canonical JSON is cut around the leaf index (`entry_around_seq`): its keys
# are sorted and always present, so "seq" sits between "purpose" and "subject". This text cannot
# occur elsewhere in the entry: a JSON string holds its quotes escaped (\"), and the only nested
# objects ("actor", "notice") have no "seq" key.
_SEQ_CUT = b',"seq":0,"subject":'


def entry_around_seq(event: LedgerEvent) -> tuple[bytes, bytes]:
    """The event's leaf entry in two parts, before and after the value of "seq" (the entry's
    keys are sorted: "seq" sits between "purpose" and "subject"), so that the entry of leaf
    index n is `before + str(n) + after`, byte for byte `event_entry_bytes` once `seq` = n.

    One serialisation of the entry with "seq" 0, cut around its value (`_SEQ_CUT`); should the
    cut not occur exactly once, the two halves are serialised apart, as they always were."""
    entry = entry_dict({**event_row(event), "seq": 0})
    whole = canonical_json(entry)
    if whole.count(_SEQ_CUT) == 1:
        before, _cut, after = whole.partition(_SEQ_CUT)
        return before + b',"seq":', b',"subject":' + after
    return _entry_halves(entry)


def _entry_halves(entry: dict[str, Any]) -> tuple[bytes, bytes]:
    """`entry_around_seq`'s parts, each half of the entry serialised on its own."""
    entry = dict(entry)
    del entry["seq"]
    before = canonical_json({key: value for key, value in entry.items() if key < "seq"})
    after = canonical_json({key: value for key, value in entry.items() if key > "seq"})
    return before[:-1] + b',"seq":', b"," + after[1:]


def _append_one_statement(event: LedgerEvent, size: int, with_state: bool) -> None:
    """PostgreSQL: the current state's upsert (`with_state`: consent_record's, made of the event's
    own columns), the counter's UPDATE ... RETURNING and the event's INSERT in one call of the
    PL/pgSQL function `consent_append_event` (migration consent 0012: its statements are planned
    once per connection, whatever the pooler). The leaf index is only known inside it, so the
    leaf hash is computed there, SHA-256(0x00 || before || the index as text || after) with
    `entry_around_seq`'s parts, and returned: Python checks it against its own hash of the same
    entry and raises (rolling the append back) if they ever differ. The counter row is locked
    from this call to the commit, as before."""
    before, after = entry_around_seq(event)
    params: list[Any] = [with_state, b"\x00" + before, after]
    params += [_column_value(field, getattr(event, field.attname)) for field in _append_fields()]
    for _ in range(2):
        row = prepared_fetch(_APPEND_CALL_SQL, params)
        if row is not None:
            break
        # No counter row (a flushed test database): create it and call again (the state's
        # write is an upsert: running it twice changes nothing).
        _sequence_create()
    seq, stored_hash = row if row is not None else (None, b"")
    event.seq = seq = _seq_check(seq, size)
    event.leaf_hash = merkle.leaf_hash(before + str(seq).encode() + after)
    if bytes(stored_hash) != event.leaf_hash:
        raise RuntimeError("the leaf hash computed by the database differs from the entry's")
    event._state.adding, event._state.db = False, connection.alias


# The event's columns as `consent_append_event` takes them (migration consent 0012), after its
# three first parameters: with_state, the entry before the index, the entry after it.
APPEND_COLUMNS = (
    ("id", "uuid"),
    ("event_type", "text"),
    ("subject_id", "uuid"),
    ("purpose_id", "bigint"),
    ("purpose_code", "text"),
    ("notice_id", "bigint"),
    ("notice_version", "integer"),
    ("notice_sha256", "text"),
    ("collection_method", "text"),
    ("actor_type", "text"),
    ("actor_id", "text"),
    ("partner_client_id", "text"),
    ("occurred_at", "timestamptz"),
    ("valid_until", "timestamptz"),
    ("linked_from", "uuid"),
    ("details_ciphertext", "bytea"),
)
_APPEND_CALL_SQL = (
    "SELECT seq, leaf_hash FROM consent_append_event(%s::boolean, %s::bytea, %s::bytea, "  # noqa: S608 - types
    + ", ".join(f"%s::{kind}" for _column, kind in APPEND_COLUMNS)
    + ")"
)


# The values PostgreSQL's backend passes on as they are (`get_db_prep_save` returns them
# unchanged). Not int: Django wraps integers in psycopg's typed wrappers (Int4, Int8...).
_PLAIN_TYPES = frozenset({str, uuid.UUID})


def _column_value(field: Any, value: Any) -> Any:
    """`field.get_db_prep_save(value, connection)` on PostgreSQL, without its calls for the values
    it returns unchanged (None, str, UUID, an aware datetime): the event's sixteen columns
    are converted at every append (issue 14). Anything else goes through the field."""
    kind = type(value)
    if value is None or kind in _PLAIN_TYPES or (kind is datetime and value.tzinfo is not None):
        return value
    return field.get_db_prep_save(value, connection)


@functools.cache
def _append_fields() -> tuple[Any, ...]:
    fields = {field.attname: field for field in LedgerEvent._meta.concrete_fields}
    return tuple(fields[column] for column, _kind in APPEND_COLUMNS)


@functools.cache
def _event_insert_sql(vendor: str) -> tuple[str, tuple[Any, ...]]:
    fields = tuple(LedgerEvent._meta.concrete_fields)
    columns = ", ".join(connection.ops.quote_name(field.column) for field in fields)
    marks = ", ".join(["%s"] * len(fields))
    return f"INSERT INTO consent_ledgerevent ({columns}) VALUES ({marks})", fields  # noqa: S608


def _event_insert(event: LedgerEvent) -> None:
    """INSERT the event row with one plain statement (the model's own value conversions, no
    query to compile); the instance is then marked as stored, as `save` would."""
    sql, fields = _event_insert_sql(connection.vendor)
    params = [field.get_db_prep_save(getattr(event, field.attname), connection) for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
    event._state.adding, event._state.db = False, connection.alias


def append_many(head: LedgerHead, events: Sequence[LedgerEvent], *, with_state: bool) -> list[LedgerEvent]:
    """Give `events` the next leaf indexes, in order, hash and insert them in one write: pending
    until the sequencer integrates them. The rows are those `append` would write for each event
    in turn (tests/consent/test_append_many.py compares them column by column).

    As `append`: the caller read `head` with `writer_head()` (or holds `lock_head()`) inside a
    transaction, and appends last; LedgerTampered (nothing written once the caller's transaction
    rolls back) on a malformed head, a counter behind it or an index already held.
    `with_state`: each event also becomes the current state of its (subject, purpose), as
    `services._state_write` writes it; the pairs must then be distinct (ValueError otherwise:
    one statement cannot upsert a row twice).

    On PostgreSQL one statement (`_APPEND_MANY_SQL`): the counter's `UPDATE ... SET next_seq =
    next_seq + n RETURNING`, the events' INSERT from arrays (one row each, the leaf hash of each
    computed by PostgreSQL from `entry_around_seq`'s parts, as `consent_append_event` does) and
    the states' upsert; Python checks every returned hash against its own. Elsewhere (SQLite)
    the states' upserts, one counter update, and one INSERT per event."""
    events = list(events)
    if not events:
        return events
    if with_state and len({(event.subject_id, event.purpose_id) for event in events}) != len(events):
        raise ValueError("append_many: one event per subject and purpose when it writes their states")
    size = _writer_size(head)
    try:
        if connection.vendor == "postgresql":
            _append_many_one_statement(events, size, with_state)
        else:
            with connection.cursor() as cursor:
                if with_state:
                    for event in events:
                        cursor.execute(STATE_UPSERT_SQL, _state_params(event))
            first = _take_seqs(size, len(events))
            for offset, event in enumerate(events):
                event.seq = first + offset
                event.leaf_hash = merkle.leaf_hash(event_entry_bytes(event))
                _event_insert(event)
    except IntegrityError as exc:
        raise LedgerTampered(
            [
                LedgerProblem(
                    kind="head",
                    seq=events[0].seq,
                    detail="nothing appended: the leaf-index counter names positions "
                    "which stored events already hold",
                )
            ]
        ) from exc
    counts: dict[tuple[str, str], int] = {}
    for event in events:
        key = (str(event.event_type), event.purpose_code)
        counts[key] = counts.get(key, 0) + 1

    def count() -> None:
        for (kind, purpose_code), n in counts.items():
            metrics.CONSENT_EVENTS.labels(kind, purpose_code).inc(n)

    transaction.on_commit(count)
    return events


_STATE_PARAM_COLUMNS = ("subject_id", "purpose_id", "event_type", "id", "valid_until", None, "occurred_at")


def _state_params(event: LedgerEvent) -> list[Any]:
    """STATE_UPSERT_SQL's parameters for `event` (what `services._state_write` gives)."""
    fields = _state_fields()
    values = [False if column is None else getattr(event, column) for column in _STATE_PARAM_COLUMNS]
    return [field.get_db_prep_save(value, connection) for field, value in zip(fields, values, strict=True)]


@functools.cache
def _state_fields() -> tuple[Any, ...]:
    from consent.models import ConsentState  # noqa: PLC0415 - only the batches need it

    fields = {field.attname: field for field in ConsentState._meta.concrete_fields}
    names = ("subject_id", "purpose_id", "status", "event_id", "valid_until", "renewal_required")
    return tuple(fields[name] for name in (*names, "updated_at"))


_TAKE_SEQS_SQL = (
    "UPDATE consent_ledgersequence SET next_seq = next_seq + %s WHERE id = 1 RETURNING next_seq - %s"
)


def _take_seqs(size: int, n: int) -> int:
    """The first of the next `n` leaf indexes, from one update of the counter row."""
    with connection.cursor() as cursor:
        cursor.execute(_TAKE_SEQS_SQL, [n, n])
        row = cursor.fetchone()
        if row is None:
            cursor.execute(_SEQUENCE_CREATE_SQL)
            cursor.execute(_TAKE_SEQS_SQL, [n, n])
            row = cursor.fetchone()
    return _seq_check(row[0] if row is not None else None, size)


# PostgreSQL: a batch of events in one statement. The events travel as one array per column
# (the same statement text whatever the batch's size), unnested WITH ORDINALITY; the counter's
# update is the only row the others join, so nothing is written when it has no row (a flushed
# test database: created, then called again). Event k (from 1) takes index first + k - 1 and
# its leaf hash is sha256(0x00 || before || the index as text || after), as in
# consent_append_event (migration consent 0012). The states' upsert is the one of
# STATE_UPSERT_SQL, from the events' own columns.
_APPEND_MANY_SQL = (
    "WITH c AS (UPDATE consent_ledgersequence SET next_seq = next_seq + %(n)s WHERE id = 1 "  # noqa: S608
    "RETURNING next_seq - %(n)s AS first), "
    "e AS (SELECT * FROM unnest(%(before)s::bytea[], %(after)s::bytea[], "
    + ", ".join(f"%({column})s::{kind}[]" for column, kind in APPEND_COLUMNS)
    + ") WITH ORDINALITY AS u(before, after, "
    + ", ".join(column for column, _kind in APPEND_COLUMNS)
    + ", k)), "
    "ins AS (INSERT INTO consent_ledgerevent ("
    + ", ".join(column for column, _kind in APPEND_COLUMNS)
    + ", seq, leaf_hash) SELECT "
    + ", ".join(f"e.{column}" for column, _kind in APPEND_COLUMNS)
    + ", c.first + e.k - 1, sha256(e.before || convert_to((c.first + e.k - 1)::text, 'UTF8') || e.after) "
    "FROM c, e ORDER BY e.k RETURNING seq, leaf_hash), "
    "st AS (INSERT INTO consent_consentstate "
    "(subject_id, purpose_id, status, event_id, valid_until, renewal_required, updated_at) "
    "SELECT e.subject_id, e.purpose_id, e.event_type, e.id, e.valid_until, false, e.occurred_at "
    "FROM c, e WHERE %(with_state)s ON CONFLICT (subject_id, purpose_id) DO UPDATE SET "
    "status = excluded.status, event_id = excluded.event_id, valid_until = excluded.valid_until, "
    "renewal_required = excluded.renewal_required, updated_at = excluded.updated_at) "
    "SELECT seq, leaf_hash FROM ins ORDER BY seq"
)


def _append_many_one_statement(events: list[LedgerEvent], size: int, with_state: bool) -> None:
    parts = [entry_around_seq(event) for event in events]
    params: dict[str, Any] = {
        "n": len(events),
        "with_state": with_state,
        "before": [b"\x00" + before for before, _after in parts],
        "after": [after for _before, after in parts],
    }
    for model_field, (column, _kind) in zip(_append_fields(), APPEND_COLUMNS, strict=True):
        name = model_field.attname
        params[column] = [_column_value(model_field, getattr(event, name)) for event in events]
    rows: list[Any] = []
    for _ in range(2):
        rows = prepared_fetch(_APPEND_MANY_SQL, params, all_rows=True)
        if rows:
            break
        _sequence_create()
    if len(rows) != len(events):
        _seq_check(None, size)
    first = _seq_check(rows[0][0], size)
    batch = zip(events, parts, rows, strict=True)
    for offset, (event, (before, after), (seq, stored_hash)) in enumerate(batch):
        if seq != first + offset:
            raise RuntimeError("the database gave the batch's events indexes out of order")
        event.seq = seq
        event.leaf_hash = merkle.leaf_hash(before + str(seq).encode() + after)
        if bytes(stored_hash) != event.leaf_hash:
            raise RuntimeError("the leaf hash computed by the database differs from the entry's")
        event._state.adding, event._state.db = False, connection.alias


# --- The sequencer ---------------------------------------------------------------------------


@dataclass
class Integration:
    """What one `integrate` call did: events put into the tree, the tree's size after, the
    tree head signed over it (None when nothing was pending)."""

    integrated: int
    size: int
    tree_head: TreeHead | None


INTEGRATE_BATCH = 5_000


def integrate(*, limit: int = INTEGRATE_BATCH) -> Integration:
    """Put up to `limit` pending events (seq >= the head's size, in sequence order) into the
    Merkle tree: one transaction, one head update, one signed tree head. Every pending row is
    checked first as `verify` checks it: a row that does not hash to its stored leaf (or is
    malformed) raises LedgerTampered and nothing is integrated, so no tree head ever signs it.
    Events wait for the commit of the appends before them (the counter makes the committed
    events a prefix), so a batch stops at the first position not stored."""
    with transaction.atomic():
        try:
            head = LedgerHead.objects.select_for_update(no_key=True).get(pk=1)
        except LedgerHead.DoesNotExist:
            _head_create()
            head = LedgerHead.objects.select_for_update(no_key=True).get(pk=1)
        stored_size = head.size if type(head.size) is int and head.size >= 0 else 0
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT seq FROM consent_ledgerevent WHERE seq >= %s ORDER BY seq LIMIT %s",
                [stored_size, max(1, limit)],
            )
            seqs = [row[0] for row in cursor.fetchall()]
        if not seqs:  # nothing pending: the head is checked when it is signed
            return Integration(integrated=0, size=stored_size, tree_head=None)
        size, frontier = head_check(head, refused="nothing integrated")
        count = 0
        for expected, seq in enumerate(seqs, start=size):
            if seq != expected:
                break
            count += 1
        if not count:
            return Integration(integrated=0, size=size, tree_head=None)
        end = size + count
        problems = rows_check(
            "SELECT id FROM consent_ledgerevent WHERE seq >= %s AND seq < %s", [size, end], max_problems=20
        )
        if problems:
            raise LedgerTampered(problems)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT seq, leaf_hash FROM consent_ledgerevent WHERE seq >= %s AND seq < %s ORDER BY seq",
                [size, end],
            )
            leaves = [bytes(row[1]) for row in cursor.fetchall()]
        nodes: list[MerkleNode] = []
        position = size
        for leaf in leaves:
            frontier, completed = merkle.frontier_append(frontier, position, leaf)
            nodes.extend(
                MerkleNode(level=level, index=index, hash=digest) for level, index, digest in completed
            )
            position += 1
        try:
            with transaction.atomic():
                MerkleNode.objects.bulk_create(nodes, batch_size=2_000)
        except IntegrityError as exc:
            raise LedgerTampered(
                [
                    LedgerProblem(
                        kind="head",
                        seq=size,
                        detail=f"nothing integrated: the ledger head row names size {size}, but the "
                        "Merkle nodes above it are already stored",
                    )
                ]
            ) from exc
        daily_counts_add(size, end)  # the DPO statistics' counts follow the tree, same transaction
        head.size = end
        head.frontier = b"".join(frontier)
        head.root_hash = merkle.frontier_root(frontier)
        head.updated_at = timezone.now()
        head.save(update_fields=["size", "frontier", "root_hash", "updated_at"])
        tree_head = tree_head_create()
    return Integration(integrated=count, size=end, tree_head=tree_head)


# --- Pre-aggregated counts for the DPO statistics (consent.models.DailyCount) ---------------

_DAILY_COUNT_ADD_SQL = (
    "INSERT INTO consent_dailycount (day, purpose_code, event_type, count) VALUES (%s, %s, %s, %s) "
    "ON CONFLICT (day, purpose_code, event_type) "
    "DO UPDATE SET count = consent_dailycount.count + excluded.count"
)


def daily_counts_of(start: int, end: int | None) -> dict[tuple[Any, str, str], int]:
    """{(day, purpose_code, event_type): events} of the events #start..#end-1 (to the last when
    `end` is None), linked copies left out, days in settings.TIME_ZONE: one GROUP BY."""
    events = LedgerEvent.objects.filter(seq__gte=start, linked_from__isnull=True)
    if end is not None:
        events = events.filter(seq__lt=end)
    rows = (
        events.annotate(day=TruncDate("occurred_at", tzinfo=ZoneInfo(settings.TIME_ZONE)))
        .values_list("day", "purpose_code", "event_type")
        .annotate(n=Count("id"))
        .order_by()
    )
    return {(day, code, kind): n for day, code, kind, n in rows}


def daily_counts_add(start: int, end: int) -> None:
    """Add the events #start..#end-1 to the DPO statistics' daily counts: called by the sequencer
    with the batch it integrates (and by bench/generate.py), in the same transaction, so the
    counts cover exactly the integrated events."""
    counts = daily_counts_of(start, end)
    if not counts:
        return
    field = DailyCount._meta.get_field("day")
    params = [
        (field.get_db_prep_save(day, connection), code, kind, n) for (day, code, kind), n in counts.items()
    ]
    with connection.cursor() as cursor:
        cursor.executemany(_DAILY_COUNT_ADD_SQL, params)


def daily_counts_differences() -> list[str]:
    """The daily counts against the integrated events counted again (one GROUP BY over them):
    [] when they agree, else one line per (day, purpose, type) that differs."""
    with transaction.atomic():
        size = head_size_shared()
        expected = daily_counts_of(0, size)
        stored = {
            (row.day, row.purpose_code, row.event_type): row.count
            for row in DailyCount.objects.all()
            if row.count
        }
    keys = sorted(expected.keys() | stored.keys(), key=lambda key: (str(key[0]), key[1], key[2]))
    return [
        f"{day} {code} {kind}: {stored.get((day, code, kind), 0)} counted, "
        f"{expected.get((day, code, kind), 0)} in the ledger"
        for day, code, kind in keys
        if stored.get((day, code, kind), 0) != expected.get((day, code, kind), 0)
    ]


def daily_counts_rebuild() -> int:
    """Count the integrated events again into the daily counts (e.g. after a change of
    settings.TIME_ZONE); returns the number of rows written."""
    with transaction.atomic():
        size = head_size_shared()
        counts = daily_counts_of(0, size)
        DailyCount.objects.all().delete()
        DailyCount.objects.bulk_create(
            [
                DailyCount(day=day, purpose_code=code, event_type=kind, count=n)
                for (day, code, kind), n in counts.items()
            ],
            batch_size=1_000,
        )
    return len(counts)


def head_size_shared() -> int:
    """The ledger head's size, its row locked against the sequencer (FOR SHARE on PostgreSQL:
    appends go on, no batch commits) until the end of the caller's transaction: the daily
    counts then cover exactly events #0..#size-1. 0 when the head row is missing or malformed
    (nothing is integrated over a malformed head)."""
    sql = "SELECT size FROM consent_ledgerhead WHERE id = 1"
    with connection.cursor() as cursor:
        cursor.execute(sql + (" FOR SHARE" if connection.vendor == "postgresql" else ""))
        row = cursor.fetchone()
    size = row[0] if row is not None else 0
    return size if type(size) is int and size >= 0 else 0


def integrate_all(*, limit: int = INTEGRATE_BATCH) -> Integration:
    """`integrate` until nothing is pending: the last batch's outcome, with the total count."""
    total = 0
    while True:
        done = integrate(limit=limit)
        total += done.integrated
        if done.integrated < limit:
            return Integration(integrated=total, size=done.size, tree_head=done.tree_head)


def pending_count() -> int:
    """Events appended and not yet integrated into the Merkle tree."""
    size = read_head().size
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM consent_ledgerevent WHERE seq >= %s", [int(size)])
        return int(cursor.fetchone()[0])


# --- Proofs from stored hashes ---------------------------------------------------------------


class LedgerTampered(Exception):
    """Stored ledger rows (or Merkle nodes, or the head row) that a read was about to show,
    export or sign are malformed or altered. `problems` name the positions; the whole-ledger
    verification (`verify`, `manage.py verify_ledger`) tells the full story."""

    def __init__(self, problems: list[LedgerProblem]) -> None:
        self.problems = problems
        super().__init__("; ".join(problem.detail for problem in problems) or "the ledger was altered")

    @property
    def positions(self) -> list[int]:
        return sorted({problem.seq for problem in self.problems if problem.seq is not None})

    @property
    def event_ids(self) -> list[str]:
        return [problem.event_id for problem in self.problems if problem.event_id]


class ProofError(ValueError):
    """A proof was asked for a size or index the ledger does not have."""


# Proof hashes are read in ONE statement: the stored leaf hashes and interior nodes the
# ranges decompose into, and the ledger head's size (which bounds the tree sizes a proof may
# name). Leaves by their unique seq, nodes by their unique (level, index): index lookups only
# (tests/consent/test_ledger_speed.py checks the plan on PostgreSQL).
_PROOF_HEAD_SQL = "SELECT -1, size, NULL FROM consent_ledgerhead WHERE id = 1"
_PROOF_LEAVES_SQL = "SELECT 0, seq, leaf_hash FROM consent_ledgerevent WHERE seq IN ({})"
_PROOF_NODES_SQL = 'SELECT level, "index", hash FROM consent_merklenode WHERE ({})'
# PostgreSQL: one text for every proof (the keys travel as three arrays), where each number of
# leaves and nodes made a statement of its own (and filled psycopg's prepared cache). This
# statement runs inside the PL/pgSQL function consent_proof_hashes (migration consent 0013),
# whose plan the backend keeps per connection, prepared statements or not; `_PROOF_PG_SQL`
# is the reference the function is tested against.
_PROOF_PG_CALL = (
    "SELECT level, idx, hash FROM consent_proof_hashes(%s::bigint[], %s::smallint[], %s::bigint[])"
)
_PROOF_PG_SQL = (
    f"{_PROOF_HEAD_SQL} "  # noqa: S608 - constant fragments only
    "UNION ALL SELECT 0, e.seq, e.leaf_hash FROM consent_ledgerevent e WHERE e.seq = ANY(%s::bigint[]) "
    'UNION ALL SELECT n.level, n."index", n.hash FROM unnest(%s::smallint[], %s::bigint[]) AS k(level, i) '
    'JOIN consent_merklenode n ON n.level = k.level AND n."index" = k.i'
)


def _proof_statement(keys: set[tuple[int, int]]) -> tuple[str, list[Any]]:
    """The one statement reading the head size and the subtree hashes `keys` name."""
    leaves = sorted(index for level, index in keys if level == 0)
    nodes = sorted((level, index) for level, index in keys if level)
    if connection.vendor == "postgresql":
        # The arrays as their text form: psycopg's list adapter checks every element (and picks
        # int2/int4/int8 by the values, making as many prepared statements).
        return _PROOF_PG_CALL, [
            "{" + ",".join(map(str, numbers)) + "}"
            for numbers in (leaves, [level for level, _ in nodes], [index for _, index in nodes])
        ]
    parts = [_PROOF_HEAD_SQL]
    params: list[int] = []
    if leaves:
        parts.append(_PROOF_LEAVES_SQL.format(", ".join(["%s"] * len(leaves))))
        params.extend(leaves)
    if nodes:
        parts.append(_PROOF_NODES_SQL.format(" OR ".join(['(level = %s AND "index" = %s)'] * len(nodes))))
        for level, index in nodes:
            params.extend((level, index))
    return " UNION ALL ".join(parts), params


def _hashes_for_ranges_sized(ranges: list[tuple[int, int]], size: int) -> list[bytes]:
    """The hashes of `ranges` (leaf ranges of a tree of `size` leaves), read in one statement
    with the head's size; ProofError when `size` is beyond the ledger or a hash is missing."""
    keys = {key for lo, hi in ranges for key in merkle.perfect_subtrees(lo, hi)}
    sql, params = _proof_statement(keys)
    found: dict[tuple[int, int], bytes] = {}
    current = 0  # a flushed test database has no head row: nothing appended yet
    for level, index, digest in prepared_fetch(sql, params, all_rows=True):
        if level == -1:
            current = int(index)
        else:
            found[(level, index)] = bytes(digest)
    if size > current and integrate_all().size >= size:
        # Pending events asked for: integrated first (the sequencer's batches), then read.
        return _hashes_for_ranges_sized(ranges, size)
    if not 0 <= size <= current:
        raise ProofError(f"tree size {size} is outside the ledger (size {current})")
    missing = keys - found.keys()
    if missing:
        raise ProofError(f"ledger storage lacks subtree hashes {sorted(missing)[:5]}")
    return [merkle.range_hash(lo, hi, lambda level, index: found[(level, index)]) for lo, hi in ranges]


def _check_size(size: int) -> None:
    current = int(read_head().size)
    if size > current:
        current = integrate_all().size  # pending events asked for: integrated first
    if not 0 <= size <= current:
        raise ProofError(f"tree size {size} is outside the ledger (size {current})")


def inclusion_proof(leaf_index: int, tree_size: int) -> list[bytes]:
    if not 0 <= leaf_index < tree_size:
        _check_size(tree_size)  # the size is reported first when both are wrong
        raise ProofError(f"leaf {leaf_index} is not in a tree of size {tree_size}")
    return _hashes_for_ranges_sized(merkle.inclusion_proof_ranges(leaf_index, tree_size), tree_size)


def consistency_proof(first: int, second: int) -> list[bytes]:
    if not 0 <= first <= second:
        _check_size(second)
        raise ProofError("a consistency proof needs 0 <= first <= second")
    return _hashes_for_ranges_sized(merkle.consistency_proof_ranges(first, second), second)


def root_at(size: int) -> bytes:
    """MTH of the first `size` leaves, from stored hashes (one statement, O(log n) rows)."""
    if size <= 0:
        _check_size(size)
        return merkle.EMPTY_ROOT
    return _hashes_for_ranges_sized([(0, size)], size)[0]


# --- Signed tree heads -----------------------------------------------------------------------


def tree_head_payload(*, tree_size: int, root_hash: bytes, timestamp: datetime) -> dict[str, Any]:
    return {
        "iss": settings.ISSUER,
        "log_id": log_id(),
        "tree_size": int(tree_size),
        "root_hash": bytes(root_hash).hex(),
        "timestamp": int(timestamp.timestamp() * 1000),
    }


def sign_compact(payload: dict[str, Any], *, typ: str) -> tuple[str, str]:
    """JWS compact (ES256) with the service's active ES256 key; returns (jws, kid)."""

    key = active_signing_key("ES256")
    token = jws.JWS(canonical_json(payload))
    # json_encode serialises any JSON value; types-jwcrypto only admits str | bytes.
    token.add_signature(key.jwk, None, json_encode({"alg": "ES256", "kid": key.kid, "typ": typ}))  # type: ignore[arg-type]
    return token.serialize(compact=True), key.kid


class SignatureInvalid(ValueError):
    """`code` says why, for verifiers that answer the public: "malformed" (not a JWS compact
    serialisation), "header" (not ES256 or not the expected `typ`), "unknown_key", "signature",
    "payload" (signed, but not a JSON object)."""

    def __init__(self, message: str, code: str = "signature") -> None:
        super().__init__(message)
        self.code = code


def verify_compact(token: str, *, typ: str) -> tuple[dict[str, Any], str]:
    """Check a JWS against the published keys; returns (payload, kid) or raises SignatureInvalid."""

    try:
        parsed = jws.JWS()
        parsed.deserialize(token)
        header = parsed.jose_header
    except (JWException, ValueError, TypeError) as exc:
        raise SignatureInvalid("not a JWS compact serialisation", "malformed") from exc
    if not isinstance(header, dict) or header.get("alg") != "ES256" or header.get("typ") != typ:
        raise SignatureInvalid("unexpected JWS header", "header")
    kid = str(header.get("kid") or "")
    key = verification_key(kid) if kid else None
    if key is None:
        raise SignatureInvalid("signing key is not (or no longer) published", "unknown_key")
    try:
        parsed.verify(key, alg="ES256")
    except (JWException, ValueError) as exc:
        raise SignatureInvalid("signature does not verify") from exc
    try:
        payload = json.loads(parsed.payload)
    except ValueError as exc:
        raise SignatureInvalid("payload is not JSON", "payload") from exc
    if not isinstance(payload, dict):
        raise SignatureInvalid("payload is not a JSON object", "payload")
    return payload, kid


def tree_head_create() -> TreeHead:
    """Sign the ledger head, once checked (`_head_for_signing`): raises LedgerTampered rather
    than sign a size or root that the stored ledger does not support."""
    size, root = _head_for_signing()
    now = timezone.now()
    # The stored timestamp is truncated to the millisecond signed in the payload.
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    payload = tree_head_payload(tree_size=size, root_hash=root, timestamp=now)
    signature, kid = sign_compact(payload, typ=TREE_HEAD_TYPE)
    return TreeHead.objects.create(
        tree_size=size, root_hash=root, timestamp=now, kid=kid, signature=signature
    )


def _head_for_signing() -> tuple[int, bytes]:
    """The ledger head's (size, root), checked in O(log n) reads before they are signed: the
    row is well-formed, the events #0..#size-1 are all stored, the root is the one the stored
    Merkle nodes and leaf hashes give, and the tree extends the latest signed tree head (a
    consistency proof from the stored nodes). A full `verify` remains the complete check;
    this one keeps a tree head from ever signing a head row altered in the database.
    Concurrent appends only add rows and nodes past `size`: they cannot make it fail."""

    def tampered(detail: str, seq: int | None = None) -> LedgerTampered:
        return LedgerTampered([LedgerProblem(kind="head", seq=seq, detail=f"no tree head signed: {detail}")])

    with connection.cursor() as cursor:
        size, root, reason = _read_head(cursor)
        if reason or size is None or root is None:
            raise tampered(f"the ledger head row is malformed ({reason})")
        cursor.execute("SELECT COUNT(*) FROM consent_ledgerevent WHERE seq >= 0 AND seq < %s", [size])
        present = int(cursor.fetchone()[0])
    if present != size:
        raise tampered(f"the ledger head records {size} events but {present} of #0..#{size - 1} are stored")
    try:
        stored_root = root_at(size)
        previous = [head for head in tree_heads_read()[0] if head.tree_size <= size]
        extends = True
        if previous and previous[-1].tree_size:
            last = previous[-1]
            proof = consistency_proof(last.tree_size, size)
            extends = merkle.verify_consistency(last.tree_size, size, bytes(last.root_hash), root, proof)
    except (ProofError, TypeError, ValueError) as exc:
        raise tampered(f"the stored Merkle nodes or leaf hashes are missing or malformed ({exc})") from exc
    if stored_root != root:
        raise tampered("the ledger head's root differs from the root of the stored Merkle nodes")
    if not extends:
        raise tampered(f"the ledger no longer extends signed tree head {previous[-1].pk}")
    return size, root


def tree_head_check(head: TreeHead) -> str:
    """'' when the signature verifies and matches the row, else the reason it does not."""
    try:
        payload, kid = verify_compact(head.signature, typ=TREE_HEAD_TYPE)
    except SignatureInvalid as exc:
        return str(exc)
    expected = tree_head_payload(
        tree_size=head.tree_size, root_hash=bytes(head.root_hash), timestamp=head.timestamp
    )
    fields = ("tree_size", "root_hash", "timestamp")
    if any(payload.get(name) != expected[name] for name in fields) or kid != head.kid:
        return "signed content differs from the stored tree head"
    return ""


def new_event_id() -> uuid.UUID:
    return uuid.uuid4()


# --- Whole-ledger verification ---------------------------------------------------------------
#
# The verifier reads the stored values with raw SQL and parses every column itself: it is the
# tool that must keep working when someone has altered rows behind the application's back, so
# it never lets the ORM convert a value (a `consent_ledgerevent.id` that is no UUID made the
# ORM raise). Every value that is malformed, of the wrong type, not in the form the
# application stores, or inconsistent with the row it copies (purpose, notice) is reported as
# tampering with the event's position; no exception escapes (issue 9, finding 10).


@dataclass
class LedgerProblem:
    # "altered", "malformed", "missing", "unexpected", "tree_head", "head", "node", "unreadable"
    kind: str
    detail: str
    seq: int | None = None
    event_id: str | None = None
    tree_head_id: int | None = None


@dataclass
class LedgerVerification:
    ok: bool
    size: int
    root_hash: str
    tree_heads_checked: int
    problems: list[LedgerProblem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    seconds: float = 0.0
    # Events appended and checked (their leaf recomputed) but not yet integrated into the
    # Merkle tree by the sequencer: `size` counts them, the head row and the stored nodes
    # cover the first `size - pending`; `root_hash` is the root the tree will have once they
    # are integrated.
    pending: int = 0

    @property
    def first_problem(self) -> LedgerProblem | None:
        return self.problems[0] if self.problems else None


class _Malformed(ValueError):
    pass


_HEX32 = re.compile(r"[0-9a-f]{32}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_EVENT_TYPES = frozenset(EventType.values)
_METHODS = frozenset(CollectionMethod.values)
_ACTORS = frozenset(ActorType.values)
_NONCE_AND_TAG = 12 + 16  # AES-GCM details: nonce || ciphertext || tag (consent.crypto)
# Malformed rows still take a place in the rebuilt tree, so that the signed roots after them
# do not match either.
_UNHASHABLE_LEAF = merkle.leaf_hash(b"malformed ledger row")
# Timestamps PostgreSQL can hold but Python cannot (infinity, years outside 1..9999) are read
# as NULL plus a flag, so that fetching them cannot fail.
_PG_TIME_RANGE = "BETWEEN '0001-01-02' AND '9999-12-30'"


def _show(value: Any) -> str:
    """A stored value as it may appear in a report: short, one line, no control characters."""
    text = f"<{len(bytes(value))} bytes>" if isinstance(value, bytes | memoryview) else repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _attempt(reasons: list[str], parse: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """parse(*args, **kwargs), or None with the reason appended when the value is malformed."""
    try:
        return parse(*args, **kwargs)
    except _Malformed as exc:
        reasons.append(str(exc))
        return None


def _int(value: Any, column: str, *, nullable: bool = False) -> int | None:
    if value is None and nullable:
        return None
    if type(value) is not int:
        raise _Malformed(f"{column} is not an integer ({_show(value)})")
    return value


def _text(value: Any, column: str, *, allowed: frozenset[str] | None = None, max_length: int = 255) -> str:
    if type(value) is not str:
        raise _Malformed(f"{column} is not text ({_show(value)})")
    if len(value) > max_length:
        raise _Malformed(f"{column} is longer than the column allows")
    if allowed is not None and value not in allowed:
        raise _Malformed(f"{column} holds an unknown value ({_show(value)})")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise _Malformed(f"{column} is not valid UTF-8 text") from exc
    return value


def _uuid(value: Any, column: str, *, nullable: bool = False) -> str | None:
    """The canonical text of a stored UUID (SQLite: 32 lowercase hex digits, as Django stores it)."""
    if value is None and nullable:
        return None
    if isinstance(value, uuid.UUID):
        return str(value)
    if type(value) is str and _HEX32.fullmatch(value):
        return f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
    raise _Malformed(f"{column} is not a UUID ({_show(value)})")


def _digest(value: Any, column: str) -> bytes:
    if not isinstance(value, bytes | memoryview):
        raise _Malformed(f"{column} is not a hash ({_show(value)})")
    value = bytes(value)
    if len(value) != merkle.HASH_SIZE:
        raise _Malformed(f"{column} is not a {merkle.HASH_SIZE}-byte hash ({len(value)} bytes)")
    return value


@overload
def _time(value: Any, column: str, *, vendor: str, nullable: Literal[False] = False) -> datetime: ...
@overload
def _time(value: Any, column: str, *, vendor: str, nullable: bool) -> datetime | None: ...
def _time(value: Any, column: str, *, vendor: str, nullable: bool = False) -> datetime | None:
    """A stored timestamp. SQLite: text exactly as Django writes it (naive UTC); PostgreSQL: the
    driver's aware datetime (out-of-range values arrive as NULL with a flag, see _PG_TIME_RANGE)."""
    if value is None:
        if nullable:
            return None
        raise _Malformed(f"{column} is empty")
    if vendor == "sqlite":
        if type(value) is not str:
            raise _Malformed(f"{column} is not a timestamp ({_show(value)})")
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError as exc:
            raise _Malformed(f"{column} is not a timestamp ({_show(value)})") from exc
        if parsed.tzinfo is not None or str(parsed) != value:
            raise _Malformed(f"{column} is not stored as the application stores timestamps ({_show(value)})")
        return parsed.replace(tzinfo=UTC)
    if not isinstance(value, datetime) or value.tzinfo is None:
        raise _Malformed(f"{column} is not a timestamp ({_show(value)})")
    return value


_EVENT_SELECT = """
SELECT e.id, e.seq, e.event_type, e.subject_id, e.purpose_code, e.notice_id, e.notice_version,
       e.notice_sha256, e.collection_method, e.actor_type, e.actor_id, e.partner_client_id,
       {occurred_at}, {valid_until}, e.linked_from, e.details_ciphertext, e.leaf_hash, e.purpose_id,
       {time_flag}
FROM consent_ledgerevent e
ORDER BY e.seq
"""


def _event_sql(vendor: str) -> str:
    if vendor == "postgresql":
        return _EVENT_SELECT.format(
            occurred_at=f"CASE WHEN e.occurred_at {_PG_TIME_RANGE} THEN e.occurred_at END",
            valid_until=f"CASE WHEN e.valid_until {_PG_TIME_RANGE} THEN e.valid_until END",
            time_flag=(
                f"(e.occurred_at IS NOT NULL AND NOT (e.occurred_at {_PG_TIME_RANGE})) "
                f"OR (e.valid_until IS NOT NULL AND NOT (e.valid_until {_PG_TIME_RANGE}))"
            ),
        )
    # No declared type on a CAST expression: sqlite3 applies no converter that could raise.
    return _EVENT_SELECT.format(
        occurred_at="CAST(e.occurred_at AS TEXT)", valid_until="CAST(e.valid_until AS TEXT)", time_flag="0"
    )


class _Reference:
    """The small tables an event copies values from (purposes, notices), read once."""

    def __init__(self, cursor: Any) -> None:
        self.purposes: dict[Any, Any] = {}
        self.notices: dict[Any, tuple[Any, Any]] = {}
        cursor.execute("SELECT id, code FROM consent_purpose")
        self.purposes = {row[0]: row[1] for row in cursor.fetchall()}
        cursor.execute("SELECT id, version, content_sha256 FROM consent_privacynotice")
        self.notices = {row[0]: (row[1], row[2]) for row in cursor.fetchall()}


def _event_row(values: tuple[Any, ...], vendor: str, reference: _Reference) -> dict[str, Any]:
    """The entry columns of one stored row, parsed and checked; raises _Malformed."""
    (
        event_id,
        seq,
        event_type,
        subject_id,
        purpose_code,
        notice_id,
        notice_version,
        notice_sha256,
        collection_method,
        actor_type,
        actor_id,
        partner_client_id,
        occurred_at,
        valid_until,
        linked_from,
        details,
        _leaf,
        purpose_id,
        time_out_of_range,
    ) = values
    problems: list[str] = []
    row: dict[str, Any] = {
        "id": _attempt(problems, _uuid, event_id, "id"),
        "seq": _attempt(problems, _int, seq, "seq"),
        "event_type": _attempt(problems, _text, event_type, "event_type", allowed=_EVENT_TYPES),
        "subject_id": _attempt(problems, _uuid, subject_id, "subject_id"),
        "purpose_code": _attempt(problems, _text, purpose_code, "purpose_code"),
        "notice_id": _attempt(problems, _int, notice_id, "notice_id", nullable=True),
        "notice_version": _attempt(problems, _int, notice_version, "notice_version", nullable=True),
        "notice_sha256": _attempt(problems, _text, notice_sha256, "notice_sha256", max_length=64),
        "collection_method": _attempt(
            problems, _text, collection_method, "collection_method", allowed=_METHODS
        ),
        "actor_type": _attempt(problems, _text, actor_type, "actor_type", allowed=_ACTORS),
        "actor_id": _attempt(problems, _text, actor_id, "actor_id", max_length=100),
        "partner_client_id": _attempt(
            problems, _text, partner_client_id, "partner_client_id", max_length=100
        ),
        "occurred_at": _attempt(problems, _time, occurred_at, "occurred_at", vendor=vendor),
        "valid_until": _attempt(problems, _time, valid_until, "valid_until", vendor=vendor, nullable=True),
        "linked_from": _attempt(problems, _uuid, linked_from, "linked_from", nullable=True),
    }
    if time_out_of_range:
        problems.append("a timestamp is out of range")
    if details is not None and (not isinstance(details, bytes | memoryview) or len(details) < _NONCE_AND_TAG):
        problems.append(f"details_ciphertext is not an encrypted value ({_show(details)})")
    row["details_ciphertext"] = details
    # Columns outside the leaf entry must agree with the values the entry copies.
    if type(purpose_id) is not int or purpose_id not in reference.purposes:
        problems.append(f"purpose_id does not name a purpose ({_show(purpose_id)})")
    elif reference.purposes[purpose_id] != purpose_code:
        problems.append("purpose_id names another purpose than purpose_code")
    if notice_id is None:
        if notice_version is not None or notice_sha256 != "":
            problems.append("notice_version or notice_sha256 set without a notice")
    elif type(notice_id) is int:
        if notice_id not in reference.notices:
            problems.append(f"notice_id does not name a privacy notice ({_show(notice_id)})")
        elif reference.notices[notice_id] != (notice_version, notice_sha256):
            problems.append("notice_version or notice_sha256 differ from the notice")
    if problems:
        raise _Malformed("; ".join(problems))
    return row


def _read_tree_heads(
    cursor: Any, vendor: str, *, latest: int | None = None
) -> tuple[list[TreeHead], list[LedgerProblem]]:
    """The signed tree heads (the `latest` largest only, by the tree_size index, when given),
    parsed like the events; malformed rows become problems."""
    if vendor == "postgresql":
        when = f"CASE WHEN timestamp {_PG_TIME_RANGE} THEN timestamp END"
    else:
        when = "CAST(timestamp AS TEXT)"
    # Only constant fragments are interpolated.
    sql = f"SELECT id, tree_size, root_hash, {when}, kid, signature FROM consent_treehead"  # noqa: S608
    if latest is None:
        cursor.execute(sql)
    else:
        cursor.execute(sql + " ORDER BY tree_size DESC, id DESC LIMIT %s", [latest])
    heads: list[TreeHead] = []
    problems: list[LedgerProblem] = []
    for head_id, tree_size, root_hash, timestamp, kid, signature in cursor.fetchall():
        try:
            reasons: list[str] = []
            _attempt(reasons, _int, head_id, "id")
            _attempt(reasons, _int, tree_size, "tree_size")
            _attempt(reasons, _digest, root_hash, "root_hash")
            _attempt(reasons, _time, timestamp, "timestamp", vendor=vendor)
            _attempt(reasons, _text, kid, "kid", max_length=100)
            _attempt(reasons, _text, signature, "signature", max_length=100_000)
            if type(tree_size) is int and tree_size < 0:
                reasons.append("tree_size is negative")
            if reasons:
                raise _Malformed("; ".join(reasons))
            heads.append(
                TreeHead(
                    pk=head_id,
                    tree_size=tree_size,
                    root_hash=bytes(root_hash),
                    timestamp=_time(timestamp, "timestamp", vendor=vendor),
                    kid=kid,
                    signature=signature,
                )
            )
        except Exception as exc:
            size = f"size {tree_size}" if type(tree_size) is int else f"size {_show(tree_size)}"
            problems.append(
                LedgerProblem(
                    kind="tree_head",
                    detail=f"signed tree head {_show(head_id)} ({size}) is malformed: {exc}",
                    tree_head_id=head_id if type(head_id) is int else None,
                )
            )
    heads.sort(key=lambda head: (head.tree_size, head.timestamp, head.pk))
    return heads, problems


def tree_heads_read(*, latest: int | None = None) -> tuple[list[TreeHead], list[LedgerProblem]]:
    """Every well-formed signed tree head (unsaved instances built from the parsed columns,
    by size then time), and a problem for each row that is not: readers that show or use the
    latest head never stumble on a row altered in the database.

    With `latest`, only the `latest` largest heads are read (one index range, however many
    heads the ledger has signed); if none of them is well formed, every head is read."""

    with connection.cursor() as cursor:
        if latest is not None:
            heads, problems = _read_tree_heads(cursor, connection.vendor, latest=latest)
            if heads:
                return heads, problems
        return _read_tree_heads(cursor, connection.vendor)


def _read_head(cursor: Any) -> tuple[int | None, bytes | None, str]:
    """(size, root) of the ledger head row, or Nones and the reason it cannot be used."""
    cursor.execute("SELECT size, root_hash FROM consent_ledgerhead WHERE id = 1")
    found = cursor.fetchone()
    if found is None:
        return 0, merkle.EMPTY_ROOT, ""  # a flushed test database: nothing appended yet
    try:
        size = _int(found[0], "size")
        if size is not None and size < 0:
            raise _Malformed("size is negative")
        return size, _digest(found[1], "root_hash"), ""
    except _Malformed as exc:
        return None, None, str(exc)


def _read_counter(cursor: Any, head_size: int | None) -> tuple[int | None, LedgerProblem | None]:
    """The leaf-index counter (positions given to appends), or None and the problem it shows."""
    cursor.execute("SELECT next_seq FROM consent_ledgersequence WHERE id = 1")
    found = cursor.fetchone()
    if found is None:
        return None, None  # a flushed test database: created by the first append
    value = found[0]
    if type(value) is not int or value < 0:
        return None, LedgerProblem(
            kind="head", detail=f"the leaf-index counter is malformed ({_show(value)})"
        )
    if head_size is not None and value < head_size:
        return None, LedgerProblem(
            kind="head",
            detail=f"the leaf-index counter ({value}) is behind the ledger head "
            f"({head_size} events integrated)",
        )
    return value, None


def verify(
    *,
    progress: Callable[[int, int], None] | None = None,
    progress_every: int = 10_000,
    max_problems: int = 100,
    chunk_size: int = 2_000,
    jobs: int = 1,
) -> LedgerVerification:
    """Recompute every leaf and the tree from the stored rows and check every signed tree head.

    - every column of every row is read raw and parsed here; a malformed value, a value not in
      the form the application writes, or a copied value (purpose code, notice version and
      digest) that disagrees with the row it copies is reported as tampering at the row's
      position, as is a subject id that names no subject;
    - each row's leaf hash is recomputed from its columns and compared with the stored one;
    - sequence numbers must be 0..n-1 without gap (a gap names the missing number);
    - the root is recomputed incrementally and compared, at each tree head's size, with the
      signed root, and at the end with the ledger head row;
    - each tree head's signature must verify against the published keys;
    - each stored interior Merkle node (what proofs are built from) must be the hash of its
      stored children.
    `progress(done, total)` is called every `progress_every` events. Never raises: whatever
    the database holds, the answer is a report (an unreadable ledger is a problem too).

    On PostgreSQL a lean scan runs first (`_verify_lean`: one set-based statement per range of
    the log, `jobs` threads, one when inside a transaction): it only ever accepts the ledger;
    at the first doubt the row-by-row verifier runs and writes the report, which is therefore
    the same whatever `jobs` is.
    """
    started = time.monotonic()
    if connection.vendor == "postgresql":
        try:
            lean = _verify_lean(jobs=max(1, jobs), progress=progress, progress_every=progress_every)
        except Exception as exc:  # any doubt: the row-by-row verifier runs and reports
            log.info("ledger verification: lean scan gave up (%s)", type(exc).__name__)
            lean = None
        if lean is not None:
            lean.seconds = time.monotonic() - started
            return lean
    problems: list[LedgerProblem] = []
    where = {"position": 0}
    try:
        result = _verify(
            problems=problems,
            where=where,
            progress=progress,
            progress_every=progress_every,
            max_problems=max_problems,
            chunk_size=chunk_size,
        )
    except Exception as exc:
        log.warning("ledger verification stopped: %s", type(exc).__name__)
        problems.append(
            LedgerProblem(
                kind="unreadable",
                seq=where["position"],
                detail=(
                    f"the ledger could not be read from event #{where['position']} on "
                    f"({type(exc).__name__}): a row there holds a value the database cannot return"
                ),
            )
        )
        problems.sort(key=lambda p: p.seq if p.seq is not None else float("inf"))
        result = LedgerVerification(ok=False, size=where["position"], root_hash="", tree_heads_checked=0)
        result.problems = problems
    result.seconds = time.monotonic() - started
    return result


def _verify(
    *,
    problems: list[LedgerProblem],
    where: dict[str, int],
    progress: Callable[[int, int], None] | None,
    progress_every: int,
    max_problems: int,
    chunk_size: int,
) -> LedgerVerification:

    vendor = connection.vendor
    if vendor != "sqlite":
        return _verify_rows(
            problems=problems,
            where=where,
            progress=progress,
            progress_every=progress_every,
            max_problems=max_problems,
            chunk_size=chunk_size,
        )
    # SQLite returns TEXT as str and fails the whole fetch on bytes that are not UTF-8: decode
    # leniently for the time of the verification, so that such a value is one malformed row.
    connection.ensure_connection()
    raw = connection.connection
    previous = raw.text_factory
    raw.text_factory = functools.partial(str, encoding="utf-8", errors="surrogateescape")
    try:
        return _verify_rows(
            problems=problems,
            where=where,
            progress=progress,
            progress_every=progress_every,
            max_problems=max_problems,
            chunk_size=chunk_size,
        )
    finally:
        raw.text_factory = previous


def _rows_cursor(vendor: str) -> Any:
    """The events in sequence order, streamed: a server-side cursor (binary results on
    PostgreSQL, see _PG_VERIFY_SQL), or Django's chunked cursor elsewhere."""
    if vendor != "postgresql":
        chunked = connection.chunked_cursor()
        chunked.execute(_event_sql(vendor))
        return chunked
    connection.ensure_connection()
    raw = connection.connection
    # WITH HOLD in autocommit mode, as Django's own server-side cursors.
    rows: Any = psycopg.ServerCursor(raw, f"verify_ledger_{uuid.uuid4().hex}", withhold=raw.autocommit)
    with connection.wrap_database_errors:
        rows.execute(_PG_VERIFY_SQL, binary=True)
    return rows


def _verify_rows(
    *,
    problems: list[LedgerProblem],
    where: dict[str, int],
    progress: Callable[[int, int], None] | None,
    progress_every: int,
    max_problems: int,
    chunk_size: int,
) -> LedgerVerification:

    vendor = connection.vendor
    run = _RowsVerification(problems=problems, where=where, max_problems=max_problems)

    with connection.cursor() as cursor:
        head_size, head_root, head_reason = _read_head(cursor)
        if head_reason:
            run.report(LedgerProblem(kind="head", detail=f"the ledger head row is malformed: {head_reason}"))
        # Read after the head: the counter has given at least the positions the head integrated
        # (and those of the appends committed meanwhile, whose rows the stream below reads).
        issued, counter_problem = _read_counter(cursor, head_size)
        if counter_problem:
            run.report(counter_problem)
        heads, head_problems = _read_tree_heads(cursor, vendor)
        for problem in head_problems:
            run.report(problem)
        reference = _Reference(cursor)
        cursor.execute(
            "SELECT e.seq, e.id, e.subject_id FROM consent_ledgerevent e "
            "LEFT JOIN consent_subject s ON s.id = e.subject_id WHERE s.id IS NULL"
        )
        dangling = {row[0] for row in cursor.fetchall()}
        cursor.execute("SELECT COUNT(*) FROM consent_ledgerevent")
        total = int(cursor.fetchone()[0])

    run.tree_heads_check(heads)
    run.checkpoints = {*run.heads_by_size, *([head_size] if head_size is not None else [])}
    run.head_size = head_size
    expected_total = max(total, head_size or 0)
    run.at_size(0)
    fast = _FastLeaves(vendor, reference)
    rows = _rows_cursor(vendor)
    try:
        while True:
            where["position"] = run.expected_seq
            batch = rows.fetchmany(chunk_size)
            if not batch:
                break
            before = run.size
            run.rows_add(batch, fast=fast, vendor=vendor, reference=reference, dangling=dangling)
            if progress is not None:
                for done in range(
                    before - before % progress_every + progress_every, run.size + 1, progress_every
                ):
                    progress(done, expected_total)
        where["position"] = run.expected_seq
    finally:
        rows.close()
    root = merkle.frontier_root(run.frontier)
    # The stored interior nodes cover the integrated events (the head's size), not the pending.
    if run.at_head is not None:
        nodes_size, (nodes_known, digests, head_tree_root) = head_size or 0, run.at_head
    else:
        nodes_size, nodes_known, digests, head_tree_root = run.size, run.nodes_known, run.level_digests, root
    if not (nodes_known and _nodes_match(vendor, nodes_size, digests)):
        with connection.cursor() as cursor:
            for problem in _check_nodes(cursor, nodes_size):
                run.report(problem)
    run.end_check(head_size=head_size, head_root=head_root, root=head_tree_root)
    if issued is not None and issued > run.expected_seq and (head_size is None or issued > head_size):
        run.report(
            LedgerProblem(
                kind="missing",
                seq=run.expected_seq,
                detail=f"the leaf-index counter has given {issued} positions but only {run.expected_seq} "
                f"rows follow in sequence (event #{run.expected_seq} onwards missing)",
            )
        )
    if progress is not None and run.size % progress_every:
        progress(run.size, expected_total)
    problems.sort(key=lambda p: p.seq if p.seq is not None else float("inf"))
    return LedgerVerification(
        ok=not problems,
        size=run.size,
        root_hash=root.hex(),
        tree_heads_checked=run.checked,
        problems=problems,
        warnings=run.warnings,
        pending=run.size - head_size if head_size is not None and run.at_head is not None else 0,
    )


class _RowsVerification:
    """What `_verify_rows` knows so far: the problems, the tree rebuilt from the rows read, the
    next sequence number expected, the signed tree heads by size."""

    def __init__(self, *, problems: list[LedgerProblem], where: dict[str, int], max_problems: int) -> None:
        self.problems = problems
        self.where = where
        self.max_problems = max_problems
        self.warnings: list[str] = []
        self.heads_by_size: dict[int, list[TreeHead]] = {}
        self.checked = 0  # signed tree heads compared with the recomputed root
        self.last_good_size = 0  # the last size at which every signed head matched
        self.frontier: list[bytes] = []
        self.size = 0  # rows read
        self.expected_seq = 0
        # The interior nodes the fast path completed, level by level in index order (a SHA-256
        # of their concatenation per level), while every leaf is its row's stored one.
        self.level_digests = [_sha256() for _ in range(65)]
        self.nodes_known = True
        # Sizes at which something is compared: the signed heads' and the head row's.
        self.checkpoints: set[int] = set()
        self.head_size: int | None = None
        # At the head row's size: (nodes_known, level digests, root), for the checks at the end.
        self.at_head: tuple[bool, list[Any], bytes] | None = None

    def at_size(self, size: int) -> None:
        """The tree has `size` leaves (a checkpoint): the signed heads of this size, and the
        state the head row and the stored nodes are compared with."""
        root = merkle.frontier_root(self.frontier)
        if size in self.heads_by_size:
            self.heads_at_check(size, root)
        if size == self.head_size:
            self.at_head = (self.nodes_known, [digest.copy() for digest in self.level_digests], root)

    def report(self, problem: LedgerProblem) -> None:
        if len(self.problems) < self.max_problems:
            self.problems.append(problem)

    def tree_heads_check(self, heads: list[TreeHead]) -> None:
        """Each head's signature; then the heads are kept by size for the root comparisons."""
        for tree_head in heads:
            try:
                reason = tree_head_check(tree_head)
            except Exception as exc:
                reason = f"signature could not be checked ({type(exc).__name__})"
            if reason == "signing key is not (or no longer) published":
                self.warnings.append(f"tree head {tree_head.pk} (size {tree_head.tree_size}): {reason}")
            elif reason:
                self.report(
                    LedgerProblem(
                        kind="tree_head",
                        detail=f"signed tree head {tree_head.pk} (size {tree_head.tree_size}): {reason}",
                        tree_head_id=tree_head.pk,
                    )
                )
        for tree_head in heads:
            self.heads_by_size.setdefault(tree_head.tree_size, []).append(tree_head)

    def heads_at_check(self, size: int, root: bytes) -> None:
        """The signed heads of this size against the root recomputed at this size."""
        matched = True
        for tree_head in self.heads_by_size.get(size, []):
            self.checked += 1
            if bytes(tree_head.root_hash) != root:
                matched = False
                self.report(
                    LedgerProblem(
                        kind="tree_head",
                        detail=(
                            f"recomputed root at size {size} differs from signed tree head "
                            f"{tree_head.pk}: an event between #{self.last_good_size} and #{size - 1} "
                            "was altered, removed or inserted"
                        ),
                        tree_head_id=tree_head.pk,
                    )
                )
        if matched:
            self.last_good_size = size

    def rows_add(
        self,
        batch: Sequence[tuple[Any, ...]],
        *,
        fast: _FastLeaves,
        vendor: str,
        reference: _Reference,
        dangling: set[Any],
    ) -> None:
        """Rows read in sequence order: the sound ones through the fast path (their leaf into
        the tree, in place), any other through `row_add`, which checks and reports it."""
        frontier, heads, levels = self.frontier, self.checkpoints, self.level_digests
        size, expected = self.size, self.expected_seq
        for values in batch:
            leaf = None
            if values[1] == expected and type(values[1]) is int and not (dangling and expected in dangling):
                leaf = fast.leaf(values)
            if leaf is None:
                self.size, self.expected_seq = size, expected
                self.nodes_known = False  # its stored leaf may differ from the recomputed one
                self.row_add(fast.full(values), vendor=vendor, reference=reference, dangling=dangling)
                frontier, size, expected = self.frontier, self.size, self.expected_seq
                continue
            # merkle.frontier_append, in place: one node hash per trailing one bit of the size;
            # each completed node also goes into its level's digest (see _nodes_match).
            position, level = size, 1
            while position & 1:
                leaf = _sha256(b"\x01" + frontier.pop() + leaf).digest()
                levels[level].update(leaf)
                position >>= 1
                level += 1
            frontier.append(leaf)
            size += 1
            expected += 1
            if size in heads:
                self.size, self.expected_seq = size, expected
                self.at_size(size)
        self.size, self.expected_seq = size, expected

    def row_add(
        self, values: tuple[Any, ...], *, vendor: str, reference: _Reference, dangling: set[Any]
    ) -> None:
        """One row read in sequence order: its number, its subject, its leaf, into the tree."""
        raw_seq = values[1]
        seq = raw_seq if type(raw_seq) is int else None
        position = seq if seq is not None else self.expected_seq
        event_id = _uuid_or_show(values[0])
        self._sequence_check(raw_seq, seq, event_id)
        if dangling and raw_seq in dangling:
            self.report(
                LedgerProblem(
                    kind="malformed",
                    seq=position,
                    event_id=event_id,
                    detail=f"event #{position} ({event_id}) names a subject that does not exist",
                )
            )
        recomputed = self._leaf(values, vendor, reference, seq=seq, position=position, event_id=event_id)
        # The tree is built from the recomputed leaves: a row altered together with
        # its stored hash still changes the root, which the signed heads then reveal.
        self.frontier, _ = merkle.frontier_append(self.frontier, self.size, recomputed)
        self.size += 1
        if self.size in self.checkpoints:
            self.at_size(self.size)

    def _sequence_check(self, raw_seq: Any, seq: int | None, event_id: str) -> None:
        """Malformed, missing or repeated sequence numbers; moves the number expected next."""
        expected_seq = self.expected_seq
        if seq is None:
            self.report(
                LedgerProblem(
                    kind="malformed",
                    seq=expected_seq,
                    event_id=event_id,
                    detail=f"the event read at position #{expected_seq} ({event_id}) has a malformed "
                    f"sequence number {_show(raw_seq)}",
                )
            )
        elif seq > expected_seq:
            self.report(
                LedgerProblem(
                    kind="missing",
                    seq=expected_seq,
                    detail=f"event #{expected_seq} is missing"
                    + (f" (events #{expected_seq}..#{seq - 1} absent)" if seq - 1 > expected_seq else ""),
                )
            )
            self.expected_seq = seq + 1
        elif seq < expected_seq:
            self.report(
                LedgerProblem(
                    kind="unexpected",
                    seq=seq,
                    event_id=event_id,
                    detail=f"sequence number #{seq} repeated or out of place ({event_id})",
                )
            )
        else:
            self.expected_seq = seq + 1

    def _leaf(
        self,
        values: tuple[Any, ...],
        vendor: str,
        reference: _Reference,
        *,
        seq: int | None,
        position: int,
        event_id: str,
    ) -> bytes:
        """The leaf hash recomputed from the row's columns (a fixed one if they cannot be read),
        compared with the stored one."""
        recomputed = _UNHASHABLE_LEAF
        try:
            row = _event_row(values, vendor, reference)
            recomputed = merkle.leaf_hash(entry_bytes(row))
            stored_leaf = _digest(values[16], "leaf_hash")
        except Exception as exc:
            if seq is not None:  # a malformed sequence number is reported above
                self.report(
                    LedgerProblem(
                        kind="malformed",
                        seq=position,
                        event_id=event_id,
                        detail=f"event #{position} ({event_id}) was altered: {_reason(exc)}",
                    )
                )
        else:
            if recomputed != stored_leaf:
                self.report(
                    LedgerProblem(
                        kind="altered",
                        seq=position,
                        event_id=event_id,
                        detail=f"event #{position} ({event_id}) was altered: "
                        "its columns no longer hash to its leaf",
                    )
                )
        return recomputed

    def end_check(self, *, head_size: int | None, head_root: bytes | None, root: bytes) -> None:
        """The ledger head row and the signed heads against what the rows gave."""
        size, expected_seq = self.size, self.expected_seq
        if head_size is not None and head_size > expected_seq:
            self.report(
                LedgerProblem(
                    kind="missing",
                    seq=expected_seq,
                    detail=f"the ledger head records {head_size} events but only {expected_seq} rows follow "
                    f"in sequence (event #{expected_seq} onwards missing)",
                )
            )
        elif head_size is not None and head_root != root:  # root: the tree at the head's size
            self.report(
                LedgerProblem(kind="head", detail="the ledger head row does not match the recomputed tree")
            )
        for tree_size in self.heads_by_size:
            if tree_size > size:
                self.report(
                    LedgerProblem(
                        kind="missing",
                        seq=size,
                        detail=f"a signed tree head covers {tree_size} events but only {size} are present",
                    )
                )


# --- The verifier's fast path ----------------------------------------------------------------
#
# Most rows are sound: for them the verifier builds the canonical entry with one f-string
# (the columns that take few values — type, purpose, notice, method, actor type, partner —
# are checked once per distinct combination with the same parsers as the full path and their
# JSON kept), hashes it with hashlib directly and compares it with the stored leaf hash. A
# row the fast path does not accept as it stands (any value of an unusual type or form, any
# mismatch with its stored leaf) goes through the full path (`_RowsVerification.row_add`),
# which parses every column and writes the report: the fast path never reports anything, so
# the problems and their messages are the full path's. The fast path only accepts a row whose
# entry it builds exactly as `entry_bytes` does and whose hash equals the stored leaf hash.

_json_string = json.encoder.encode_basestring  # what json.dumps(ensure_ascii=False) writes for a str
_sha256 = hashlib.sha256
# On PostgreSQL the verifier reads the UUIDs as text (PostgreSQL's text form of a uuid is the
# canonical one, str(uuid.UUID)) and the timestamps in the entry's form (NULL, with the flag,
# when outside the range Python holds, see _PG_TIME_RANGE), in binary format: no Python object
# per UUID or timestamp. `_FastLeaves.full` turns such a row back into `_event_sql`'s values.
_PG_TIME_TEXT = "to_char(CASE WHEN e.{column} {range} THEN e.{column} END AT TIME ZONE 'UTC', '{form}')"
_ENTRY_TIME_FORM = 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'
_PG_VERIFY_SQL = f"""
SELECT e.id::text, e.seq, e.event_type, e.subject_id::text, e.purpose_code, e.notice_id, e.notice_version,
       e.notice_sha256, e.collection_method, e.actor_type, e.actor_id, e.partner_client_id,
       {_PG_TIME_TEXT.format(column="occurred_at", range=_PG_TIME_RANGE, form=_ENTRY_TIME_FORM)},
       {_PG_TIME_TEXT.format(column="valid_until", range=_PG_TIME_RANGE, form=_ENTRY_TIME_FORM)},
       e.linked_from::text, e.details_ciphertext, e.leaf_hash, e.purpose_id,
       (e.occurred_at IS NOT NULL AND NOT (e.occurred_at {_PG_TIME_RANGE}))
       OR (e.valid_until IS NOT NULL AND NOT (e.valid_until {_PG_TIME_RANGE}))
FROM consent_ledgerevent e
ORDER BY e.seq
"""  # noqa: S608 - constant fragments only


def _uuid_value(text: str | None) -> uuid.UUID | None:
    """A uuid column read as text, back to the driver's value (NULL stays None: reported)."""
    return None if text is None else uuid.UUID(text)


def _entry_time(text: str | None) -> datetime | None:
    return None if text is None else datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)


class _FastLeaves:
    """Leaf hashes of sound rows, built without parsing each column (see above)."""

    def __init__(self, vendor: str, reference: _Reference) -> None:
        self.vendor = vendor
        self.reference = reference
        # (event_type, purpose_code, notice_id, notice_version, notice_sha256, method,
        # actor_type, partner, purpose_id, and the types of the integers) -> JSON parts or None
        self.shapes: dict[tuple[Any, ...], tuple[str, str, str] | None] = {}
        self.uuids: dict[Any, str] = {}  # SQLite: stored hex -> canonical text, checked once

    def shape(self, key: tuple[Any, ...]) -> tuple[str, str, str] | None:
        """The JSON parts for one combination of the few-valued columns; None if any of them is
        not what the full path accepts."""
        event_type, purpose_code, notice_id, notice_version, notice_sha256, method, actor_type = key[:7]
        partner, purpose_id = key[7:9]
        reasons: list[str] = []
        _attempt(reasons, _text, event_type, "event_type", allowed=_EVENT_TYPES)
        _attempt(reasons, _text, purpose_code, "purpose_code")
        _attempt(reasons, _int, notice_id, "notice_id", nullable=True)
        _attempt(reasons, _int, notice_version, "notice_version", nullable=True)
        _attempt(reasons, _text, notice_sha256, "notice_sha256", max_length=64)
        _attempt(reasons, _text, method, "collection_method", allowed=_METHODS)
        _attempt(reasons, _text, actor_type, "actor_type", allowed=_ACTORS)
        _attempt(reasons, _text, partner, "partner_client_id", max_length=100)
        purposes, notices = self.reference.purposes, self.reference.notices
        if reasons or type(purpose_id) is not int or purposes.get(purpose_id) != purpose_code:
            return None
        if notice_id is None:
            if notice_version is not None or notice_sha256 != "":
                return None
            notice: dict[str, Any] | None = None
        elif notices.get(notice_id) != (notice_version, notice_sha256):
            return None
        else:
            notice = {"id": notice_id, "version": notice_version, "sha256": notice_sha256}
        try:
            middle = (
                f',"method":{_json_string(method)},"notice":{canonical_json(notice).decode()},'
                f'"partner":{canonical_json(partner or None).decode()},'
                f'"purpose":{canonical_json(purpose_code).decode()},"seq":'
            )
        except UnicodeEncodeError:
            return None
        return (
            f',"type":{_json_string(actor_type)}}},"at":"',
            middle,
            f',"type":{_json_string(event_type)},"v":1,',
        )

    def full(self, values: tuple[Any, ...]) -> tuple[Any, ...]:
        """The row as `_event_sql` reads it (PostgreSQL: UUIDs and timestamps as Python values),
        for the full path. A uuid column's text and the timestamp text at microsecond precision
        convert back without loss."""
        if self.vendor != "postgresql":
            return values
        event_id, subject, at, valid_until, linked_from = (
            values[0],
            values[3],
            values[12],
            values[13],
            values[14],
        )
        return (
            _uuid_value(event_id),
            values[1],
            values[2],
            _uuid_value(subject),
            *values[4:12],
            _entry_time(at),
            _entry_time(valid_until),
            _uuid_value(linked_from),
            *values[15:19],
        )

    def uuid_text(self, value: Any) -> str | None:
        """SQLite: the canonical text of a stored UUID (32 lowercase hex digits), else None."""
        known = self.uuids.get(value)
        if known is None and type(value) is str and _HEX32.fullmatch(value):
            known = self.uuids[value] = (
                f"{value[:8]}-{value[8:12]}-{value[12:16]}-{value[16:20]}-{value[20:]}"
            )
        return known

    def sqlite_time(self, value: Any) -> str | None:
        """SQLite: a stored timestamp in the entry's form, if stored as the application does."""
        if type(value) is not str or value[:1] == "0":
            return None
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            return None
        if parsed.tzinfo is not None or str(parsed) != value:
            return None
        return f"{value[:10]}T{value[11:]}Z" if len(value) == 26 else f"{value[:10]}T{value[11:]}.000000Z"

    def leaf(self, values: tuple[Any, ...]) -> bytes | None:
        """The leaf hash of a sound row (equal to its stored one), or None: full path."""
        key = (values[2], *values[4:10], values[11], values[17], type(values[5]), type(values[6]))
        shapes = self.shapes
        try:
            parts = shapes[key]
        except KeyError:
            parts = shapes[key] = self.shape(key)
        if parts is None:
            return None
        actor_id, details = values[10], values[15]
        if type(actor_id) is not str or len(actor_id) > 100 or values[18]:
            return None
        if details is None:
            details_json = "null"
        elif type(details) is bytes and len(details) >= _NONCE_AND_TAG:
            details_json = f'"{binascii.b2a_base64(details, newline=False).decode()}"'
        else:
            return None
        if self.vendor == "postgresql":
            event_id, subject, at, valid_until, linked_from = (
                values[0],
                values[3],
                values[12],
                values[13],
                values[14],
            )
            if at is None or at[:1] == "0" or (valid_until is not None and valid_until[:1] == "0"):
                return None
        else:
            event_id, subject = self.uuid_text(values[0]), self.uuid_text(values[3])
            at = self.sqlite_time(values[12])
            linked_from = None if values[14] is None else self.uuid_text(values[14])
            valid_until = None if values[13] is None else self.sqlite_time(values[13])
            if (
                event_id is None
                or subject is None
                or at is None
                or (linked_from is None and values[14] is not None)
                or (valid_until is None and values[13] is not None)
            ):
                return None
        actor_part, middle, type_part = parts
        linked_json = "null" if linked_from is None else f'"{linked_from}"'
        valid_json = "null" if valid_until is None else f'"{valid_until}"'
        entry = (
            f'\x00{{"actor":{{"id":{_json_string(actor_id)}{actor_part}{at}","details":{details_json},'
            f'"id":"{event_id}","linked_from":{linked_json}{middle}{values[1]},"subject":"{subject}"'
            f'{type_part}"valid_until":{valid_json}}}'
        )
        try:
            digest = _sha256(entry.encode()).digest()
        except UnicodeEncodeError:
            return None
        return digest if digest == values[16] else None


# --- The lean scan: PostgreSQL, in ranges, in parallel ------------------------------------------
#
# Before the row-by-row verifier above, `verify` tries a scan that can only ACCEPT the ledger,
# in aligned ranges of 2**level positions (each a complete subtree of the RFC 9162 tree, the last
# one possibly partial), by `jobs` threads on connections of their own, or in this thread when
# jobs == 1. Each range is ONE statement (one snapshot), set-based in PostgreSQL: no line per
# event comes back. It returns (see _lean_range_sql):
# - the few-valued columns grouped, each group with its count of rows and of rows whose entry,
#   written by PostgreSQL from the columns, hashes to the stored leaf (_LEAN_FLAG); Python checks
#   each combination with the full parsers (`_FastLeaves.shape`), with what it copies;
# - the stored leaves end to end in sequence order (one value), each checked to be 32 bytes and
#   at its position (seq = lo + its rank): no gap, no repeat, nothing out of place;
# - per level of the range's subtree, the stored interior nodes of the integrated tree end to
#   end in index order, each checked the same way (index = first + its rank, 32 bytes).
# Python rebuilds the subtree from the leaves level by level (one SHA-256 per node, on slices of
# one bytes value), compares each level with the stored nodes as bytes, and returns the subtree's
# frontier at its end and at the signed sizes it contains. The parent combines the subtree
# roots, compares the roots at the signed sizes and at the head's size, and checks the nodes
# above the ranges. The scan never reports anything: at the first doubt (a group it does not
# accept, a row whose entry does not hash to its leaf, a gap, a root or a node that differs, a
# problem in the head, counter or tree-head rows, a dangling subject, an error) it gives up and
# `verify` runs the row-by-row verifier, whose report is then the only one: the problems and
# their messages are unchanged.

VERIFY_JOBS = 2  # `manage.py verify_ledger --jobs`' default (a 2-core machine)
_RANGE_MIN_LEVEL = 16  # ranges of at least 2**16 events (tests lower it)
_RANGE_MAX_LEVEL = 18  # and at most 2**18 (8 MiB of leaves in one value, in each process)
_RANGES_PER_JOB = 4
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00\x00\x00\x00" + b"\x00\x00\x00\x00"
_COPY_TRAILER = b"\xff\xff"
# The stored nodes above the ranges are read with COPY (binary) as rows (hash, "index" = the next
# index expected): each row is then _NODE_BEFORE + the 32-byte hash + _NODE_AFTER, so the digest
# of the stream expected is computed from the recomputed hashes alone (see _lean_nodes_match).
_NODE_BEFORE = b"\x00\x02" + b"\x00\x00\x00\x20"  # 2 fields; 32 bytes of hash
_NODE_AFTER = b"\x00\x00\x00\x01" + b"\x01"  # 1 byte: true
_NODE_BETWEEN = _NODE_AFTER + _NODE_BEFORE
# The entry is built by PostgreSQL from the row's columns, each as a JSON value: a text between
# double quotes (what to_json writes for a text without a character it escapes; a row holding one
# is never accepted, see _LEAN_FLAG), the uuid's text form, to_char for the timestamps within the
# range the verifier accepts, base64 for the details: an injective, faithful encoding of the
# columns, so the entry equals the one hashed at the append (its leaf hash matches) only if every
# column it covers is the original one. Anything else (NULL where a value is required, a value
# out of range) gives NULL or another string, a leaf that does not match, and the row-by-row
# verifier. The few-valued columns also come apart (grouped, _LEAN_TAIL): they are checked with
# the full parsers once per combination (`_FastLeaves.shape`), with the values they copy.
_LEAN_TIME = f"to_char(e.{{column}} AT TIME ZONE 'UTC', '{_ENTRY_TIME_FORM}')"
_LEAN_ENTRY = (
    """'{"actor":{"id":"' || e.actor_id || '","type":"' || e.actor_type || '"},"at":"' || """
    f"CASE WHEN e.occurred_at {_PG_TIME_RANGE} THEN {_LEAN_TIME.format(column='occurred_at')} END"
    """ || '","details":' || CASE WHEN e.details_ciphertext IS NULL THEN 'null' """
    f"WHEN length(e.details_ciphertext) >= {_NONCE_AND_TAG} "
    """THEN '"' || translate(encode(e.details_ciphertext, 'base64'), E'\n', '') || '"' END """
    """|| ',"id":"' || e.id || '","linked_from":' """
    """|| CASE WHEN e.linked_from IS NULL THEN 'null' ELSE '"' || e.linked_from || '"' END """
    """|| ',"method":"' || e.collection_method || '","notice":' """
    """|| CASE WHEN e.notice_id IS NULL THEN 'null' ELSE '{"id":' || e.notice_id || ',"sha256":"' """
    """|| e.notice_sha256 || '","version":' || e.notice_version || '}' END """
    """|| ',"partner":' || CASE WHEN e.partner_client_id = '' THEN 'null' """
    """ELSE '"' || e.partner_client_id || '"' END """
    """|| ',"purpose":"' || e.purpose_code || '","seq":' || e.seq || ',"subject":"' || e.subject_id """
    """|| '","type":"' || e.event_type || '","v":1,"valid_until":' """
    f"|| CASE WHEN e.valid_until IS NULL THEN 'null' WHEN e.valid_until {_PG_TIME_RANGE} "
    f"""THEN '"' || {_LEAN_TIME.format(column="valid_until")} || '"' END || '}}'"""
)
# PostgreSQL hashes the entry it wrote (pg_catalog.sha256, the same SHA-256) and compares it with
# the stored leaf; only the count of rows where they are equal comes back. The flag is true only
# when no text column holds a character that to_json escapes (a double quote, a backslash, a
# control character), for which the quoted text would not be the JSON string: the one free-text
# column outside the tail, actor_id, here; the tail's text columns in `_LeanShapes.parse` (the
# whole group is refused). Anything else (NULL, a mismatch) is not counted, and the row-by-row
# verifier runs.
_LEAN_FLAG = (
    f"(pg_catalog.sha256('\\x00'::bytea || pg_catalog.convert_to({_LEAN_ENTRY}, 'UTF8')) = e.leaf_hash "
    "AND e.actor_id !~ '[\"\\\\\\x01-\\x1f]')"
)
_LEAN_TAIL = (
    "e.event_type, e.purpose_code, e.notice_id, e.notice_version, e.notice_sha256, e.collection_method, "
    "e.actor_type, e.partner_client_id, e.purpose_id"
)
_LEAN_NULLS = ", ".join(["NULL"] * 9)
_JSON_ESCAPED = re.compile(r'["\\\x00-\x1f]')  # the characters to_json escapes in a string
# The range statements are large and each runs once: compiling them (JIT) costs more than it saves;
# parallel query is left as the server has it (it lowered the CPU per event here).
_LEAN_SESSION_SQL = "SELECT set_config('jit', 'off', {local})"
_LEAN_SETTINGS_SQL = "SELECT current_setting('server_encoding'), current_setting('client_encoding')"


class _NotClean(Exception):
    """The lean scan gives up: the row-by-row verifier runs and writes the report."""


@dataclass
class _RangeTask:
    lo: int
    level: int
    last: bool
    checkpoints: list[int]  # absolute sizes in (lo, lo + 2**level]
    nodes_size: int  # the stored nodes cover the tree of this many leaves (the head's size)
    purposes: dict[Any, Any]
    notices: dict[Any, tuple[Any, Any]]


@dataclass
class _RangeResult:
    count: int
    frontier: list[bytes]  # local: the subtrees of positions lo..lo+count-1, left to right
    at: dict[int, list[bytes]]  # local frontier at each checkpoint reached


def _lean_settings_ok(cursor: Any) -> bool:
    cursor.execute(_LEAN_SETTINGS_SQL)
    server, client = cursor.fetchone()
    return server == "UTF8" and client == "UTF8"  # the entry's bytes as PostgreSQL writes them


class _LeanShapes:
    """The few-valued columns of a group of rows (a tuple, as fetched) -> the entry's JSON parts,
    with `_FastLeaves.shape`'s checks; None when any of them is not what the full path accepts."""

    def __init__(self, reference: _Reference) -> None:
        self.fast = _FastLeaves("postgresql", reference)
        self.known: dict[tuple[Any, ...], tuple[str, str, str] | None] = {}

    def get(self, values: tuple[Any, ...]) -> tuple[str, str, str] | None:
        try:
            return self.known[values]
        except KeyError:
            pass
        parts = self.parse(values)
        self.known[values] = parts
        return parts

    def parse(self, values: tuple[Any, ...]) -> tuple[str, str, str] | None:
        if len(values) != 9:
            return None
        for value in values:
            if type(value) is str and _JSON_ESCAPED.search(value):
                return None  # a character to_json escapes: the full path decides
            if value is not None and type(value) not in (str, int):
                return None
        event_type, purpose_code, notice_id, notice_version, notice_sha256, method, actor_type = values[:7]
        partner, purpose_id = values[7:9]
        key = (
            event_type,
            purpose_code,
            notice_id,
            notice_version,
            notice_sha256,
            method,
            actor_type,
            partner,
            purpose_id,
            type(notice_id),
            type(notice_version),
        )
        return self.fast.shape(key)


def _lean_range_sql(task: _RangeTask) -> str:
    """One statement (one snapshot) for a range: the few-valued columns grouped, each group with
    its count of rows and of rows whose entry hashes to their stored leaf (`_LEAN_FLAG`); the
    stored leaves in sequence order, each checked to be 32 bytes at its expected position; and
    per level of the range's subtree the stored interior nodes of the integrated tree in index
    order, each checked the same way. Integers only are interpolated."""
    lo, level = task.lo, task.level
    where = f"e.seq >= {lo}" + ("" if task.last else f" AND e.seq < {lo + (1 << level)}")
    parts = [
        f"SELECT 0, NULL::smallint, {_LEAN_TAIL}, count(*), count(*) FILTER (WHERE {_LEAN_FLAG}), "  # noqa: S608
        f"NULL::bytea FROM consent_ledgerevent e WHERE {where} GROUP BY {_LEAN_TAIL}",
        f"SELECT 1, NULL, {_LEAN_NULLS}, count(*), count(*) FILTER (WHERE s.ok), "  # noqa: S608
        "string_agg(s.leaf_hash, ''::bytea) FROM (SELECT e.leaf_hash, length(e.leaf_hash) = 32 "
        f"AND e.seq = {lo - 1} + row_number() OVER (ORDER BY e.seq) AS ok "
        f"FROM consent_ledgerevent e WHERE {where} ORDER BY e.seq) s",
    ]
    end = min(lo + (1 << level), task.nodes_size)
    for node_level in range(1, level + 1):
        first, stop = lo >> node_level, end >> node_level
        if stop > first:
            parts.append(
                f"SELECT 2, {node_level}::smallint, {_LEAN_NULLS}, count(*), count(*) FILTER (WHERE s.ok), "  # noqa: S608
                "string_agg(s.hash, ''::bytea) FROM (SELECT n.hash, length(n.hash) = 32 "
                f'AND n."index" = {first - 1} + row_number() OVER (ORDER BY n."index") AS ok '
                f'FROM consent_merklenode n WHERE n.level = {node_level} AND n."index" >= {first} '
                f'AND n."index" < {stop} ORDER BY n."index") s'
            )
    return " UNION ALL ".join(f"({part})" for part in parts)


def _lean_levels(leaves: bytes, level: int) -> list[bytes]:
    """The range's subtree level by level, each level its node hashes end to end (level 0: the
    leaves), as far as pairs below are complete."""
    sha256 = _sha256
    levels = [leaves]
    below = leaves
    for _ in range(level):
        below = b"".join(
            [sha256(b"\x01" + below[i : i + 64]).digest() for i in range(0, len(below) - 63, 64)]
        )
        levels.append(below)
    return levels


def _lean_frontier(levels: list[bytes], count: int) -> list[bytes]:
    """The frontier of the range's first `count` leaves (one subtree per bit, highest first)."""
    frontier: list[bytes] = []
    prefix = 0
    for bit in range(count.bit_length() - 1, -1, -1):
        if count >> bit & 1:
            index = prefix >> bit
            frontier.append(levels[bit][32 * index : 32 * index + 32])
            prefix += 1 << bit
    return frontier


def _lean_range(cursor: Any, task: _RangeTask) -> _RangeResult:
    """Scan one range (see above) on `cursor`; raises _NotClean at the first doubt."""
    lo, level = task.lo, task.level
    width = 1 << level
    shapes = _LeanShapes(_reference_of(task.purposes, task.notices))
    cursor.execute(_lean_range_sql(task), binary=True)
    rows, sound, leaves, count = 0, 0, b"", -1
    stored: dict[int, tuple[int, int, bytes]] = {}
    for kind, node_level, *tail, total, good, blob in cursor.fetchall():
        if kind == 0:
            if shapes.get(tuple(tail)) is None:
                raise _NotClean
            rows, sound = rows + total, sound + good
        elif kind == 1:
            if total != good:
                raise _NotClean
            count, leaves = total, blob or b""
        else:
            stored[node_level] = (total, good, blob or b"")
    if count < 0 or rows != count or sound != count or len(leaves) != 32 * count:
        raise _NotClean
    if count > width or (not task.last and count != width):
        raise _NotClean
    levels = _lean_levels(leaves, level)
    end = min(lo + width, task.nodes_size)
    for node_level in range(1, level + 1):
        first, stop = lo >> node_level, end >> node_level
        if stop > first:
            total, good, blob = stored.pop(node_level, (-1, -1, b""))
            expected = levels[node_level][: 32 * (stop - first)]
            if total != stop - first or good != total or blob != expected:
                raise _NotClean
    if stored:
        raise _NotClean
    at = {size: _lean_frontier(levels, size - lo) for size in task.checkpoints if size <= lo + count}
    return _RangeResult(count=count, frontier=_lean_frontier(levels, count), at=at)


def _lean_nodes_match(cursor: Any, level: int, first: int, stop: int, expected: Any) -> bool:
    """The stored nodes of `level`, indexes first..stop-1, read with COPY (binary), against
    `expected` (a digest of the same COPY stream built from the recomputed nodes). Each row
    says whether its index is the one expected there (row_number in index order), so a node
    missing, repeated or out of place changes the stream, as a hash does."""
    stored = _sha256()
    sql = (
        f'COPY (SELECT hash, "index" = {first - 1} + row_number() OVER (ORDER BY "index") '  # noqa: S608
        f'FROM consent_merklenode WHERE level = {level} AND "index" >= {first} AND "index" < {stop} '
        'ORDER BY "index") TO STDOUT (FORMAT binary)'
    )
    with cursor.copy(sql) as copy:
        for data in copy:
            stored.update(data)
    digest = expected.copy()
    digest.update(_COPY_TRAILER)
    return stored.digest() == digest.digest()


def _reference_of(purposes: dict[Any, Any], notices: dict[Any, tuple[Any, Any]]) -> _Reference:
    reference = _Reference.__new__(_Reference)
    reference.purposes, reference.notices = purposes, notices
    return reference


_LEAN_PARAMS: dict[str, Any] = {}  # the worker threads' connection parameters (set before they start)


def _lean_worker(task: _RangeTask) -> _RangeResult | None:
    """One range in a worker thread, on a connection of its own (never Django's)."""
    try:
        with psycopg.connect(**_LEAN_PARAMS, autocommit=True) as raw, raw.cursor() as cursor:
            if not _lean_settings_ok(cursor):
                return None
            cursor.execute(_LEAN_SESSION_SQL.format(local="false"))
            return _lean_range(cursor, task)
    except Exception:  # any doubt: the row-by-row verifier runs
        return None


def _lean_level(end: int, jobs: int) -> int:
    """The ranges' level: about _RANGES_PER_JOB ranges per job, each at least 2**_RANGE_MIN_LEVEL
    events and at most 2**_RANGE_MAX_LEVEL (the range's leaves come as one value)."""
    share = -(-end // (jobs * _RANGES_PER_JOB))
    return max(_RANGE_MIN_LEVEL, min(_RANGE_MAX_LEVEL, (share - 1).bit_length()))


def _frontier_push(
    frontier: list[tuple[int, bytes]], level: int, digest: bytes
) -> list[tuple[int, int, bytes]]:
    """Append a perfect subtree (level, hash) to a frontier of (level, hash) whose last entry is
    not smaller; merges equal levels (the carries). Returns the nodes completed, (level, index
    unknown here: -1, hash)."""
    completed: list[tuple[int, int, bytes]] = []
    while frontier and frontier[-1][0] == level:
        digest = merkle.node_hash(frontier.pop()[1], digest)
        level += 1
        completed.append((level, -1, digest))
    frontier.append((level, digest))
    return completed


def _frontier_levels(size: int, hashes: Sequence[bytes]) -> list[tuple[int, bytes]]:
    """A frontier of `size` leaves with the level of each of its subtrees (one per bit, highest first)."""
    levels = [bit for bit in range(size.bit_length() - 1, -1, -1) if size >> bit & 1]
    if len(levels) != len(hashes):
        raise _NotClean
    return list(zip(levels, hashes, strict=True))


def _verify_lean(
    *,
    jobs: int,
    progress: Callable[[int, int], None] | None,
    progress_every: int = 10_000,
) -> LedgerVerification | None:
    """The lean scan (see above): the result when everything verifies, else None. `progress`
    is called as the row-by-row verifier calls it, each range's calls when the range is done."""
    reported = 0

    def advance(done: int, total: int) -> None:
        nonlocal reported
        if progress is not None:
            for step in range(
                reported - reported % progress_every + progress_every, done + 1, progress_every
            ):
                progress(step, total)
        reported = done

    if connection.vendor != "postgresql":
        return None
    if connection.in_atomic_block:
        jobs = 1  # other connections would not see this transaction's rows
    connection.ensure_connection()
    problems: list[LedgerProblem] = []
    run = _RowsVerification(problems=problems, where={"position": 0}, max_problems=1)
    with connection.cursor() as cursor:
        if not _lean_settings_ok(cursor):
            return None
        head_size, head_root, head_reason = _read_head(cursor)
        issued, counter_problem = _read_counter(cursor, head_size)
        heads, head_problems = _read_tree_heads(cursor, "postgresql")
        if head_reason or counter_problem or head_problems or head_size is None or head_root is None:
            return None
        reference = _Reference(cursor)
        cursor.execute(
            "SELECT EXISTS (SELECT 1 FROM consent_ledgerevent WHERE seq < 0), "
            "(SELECT COUNT(*) FROM consent_ledgerevent)"
        )
        negative, total = cursor.fetchone()
    if negative:
        return None
    run.tree_heads_check(heads)
    if problems:
        return None
    end = max(int(total), head_size)
    level = _lean_level(end, jobs)
    width = 1 << level
    count = max(1, -(-end // width))
    sizes = sorted({*run.heads_by_size, head_size})
    tasks = [
        _RangeTask(
            lo=index * width,
            level=level,
            last=index == count - 1,
            checkpoints=[size for size in sizes if index * width < size <= (index + 1) * width],
            nodes_size=head_size,
            purposes=reference.purposes,
            notices=reference.notices,
        )
        for index in range(count)
    ]
    results = _lean_ranges(tasks, jobs, lambda done: advance(done, end), _lean_no_dangling)
    if results is None:
        return None
    result = _lean_combine(run, tasks, results, head_size=head_size, head_root=head_root, issued=issued)
    if result is not None and progress is not None and result.size % progress_every:
        progress(result.size, end)
    return result


def _lean_no_dangling() -> bool:
    """No event names a subject that does not exist (one anti-join over the whole log)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT NOT EXISTS (SELECT 1 FROM consent_ledgerevent e LEFT JOIN consent_subject s "
            "ON s.id = e.subject_id WHERE s.id IS NULL)"
        )
        return cursor.fetchone()[0] is True


def _lean_ranges(
    tasks: list[_RangeTask], jobs: int, done: Callable[[int], None], meanwhile: Callable[[], bool]
) -> list[_RangeResult] | None:
    """Each range's result, in order (`done(position)` after each), or None if one gave up or
    `meanwhile()` (a check of the whole log, run by this thread while the workers scan) is false."""
    results: list[_RangeResult] = []
    if jobs <= 1 or len(tasks) == 1:
        if not meanwhile():
            return None
        # One transaction (a savepoint inside the caller's): a statement that fails half-way
        # leaves the caller's transaction usable.
        try:
            with transaction.atomic(), psycopg.Cursor(connection.connection) as cursor:
                cursor.execute(_LEAN_SESSION_SQL.format(local="true"))  # this transaction only
                for task in tasks:
                    results.append(_lean_range(cursor, task))
                    done(task.lo + results[-1].count)
        except _NotClean:
            return None
        return results
    _LEAN_PARAMS.clear()
    _LEAN_PARAMS.update(
        {
            key: value
            for key, value in connection.get_connection_params().items()
            if key not in ("cursor_factory", "prepare_threshold", "context")
        }
    )
    # Threads, not forked processes: a fork of a process that runs other threads (a server,
    # a test runner) can copy a lock some thread held and hang the child. Most of a range's
    # cost is PostgreSQL's (the entries written and hashed, the groups, the aggregates), in each
    # connection's own backend process, while the thread waits without the GIL; the Python part
    # (one SHA-256 per node, ~1 µs per event) holds it. This thread meanwhile checks the subjects.
    with ThreadPoolExecutor(max_workers=min(jobs, len(tasks))) as pool:
        futures = [pool.submit(_lean_worker, task) for task in tasks]
        try:
            if not meanwhile():
                return None
            for task, future in zip(tasks, futures, strict=True):
                result = future.result()
                if result is None:
                    return None
                results.append(result)
                done(task.lo + result.count)
        finally:
            for future in futures:
                future.cancel()
    return results


def _lean_roots_match(
    run: _RowsVerification, roots: dict[int, bytes], *, size: int, head_size: int, head_root: bytes
) -> bool:
    """The signed heads and the head row against the roots recomputed at their sizes (counted
    in `run.checked` as the row-by-row verifier counts them)."""
    for tree_size in sorted(run.heads_by_size):
        if tree_size > size:
            return False
        heads = run.heads_by_size[tree_size]
        run.checked += len(heads)
        if any(bytes(head.root_hash) != roots[tree_size] for head in heads):
            return False
    return head_size <= size and roots.get(head_size) == head_root


def _lean_combine(
    run: _RowsVerification,
    tasks: list[_RangeTask],
    results: list[_RangeResult],
    *,
    head_size: int,
    head_root: bytes,
    issued: int | None,
) -> LedgerVerification | None:
    """The ranges' subtrees put together: the roots at the signed sizes and at the head's size,
    the stored nodes above the ranges; the result, or None at the first difference."""
    level = tasks[0].level
    width = 1 << level
    frontier: list[tuple[int, bytes]] = []  # the tree before the current range
    roots: dict[int, bytes] = {0: merkle.EMPTY_ROOT}
    upper = [_sha256(_COPY_HEADER) for _ in range(65)]  # the nodes above the ranges' level
    size = 0
    for task, result in zip(tasks, results, strict=True):
        if size != task.lo or (not task.last and result.count != width):
            return None  # a range with fewer rows than positions: the row-by-row verifier says which
        for at, local in result.at.items():
            combined = list(frontier)
            for entry in _frontier_levels(at - task.lo, local):
                _frontier_push(combined, *entry)
            roots[at] = merkle.frontier_root([digest for _, digest in combined])
        size += result.count
        if result.count == width:
            for node_level, _, digest in _frontier_push(frontier, level, result.frontier[0]):
                if size <= head_size:
                    upper[node_level].update(_NODE_BEFORE + digest + _NODE_AFTER)
        elif result.count:
            for entry in _frontier_levels(result.count, result.frontier):
                _frontier_push(frontier, *entry)
    root = merkle.frontier_root([digest for _, digest in frontier])
    roots[size] = root
    if not _lean_roots_match(run, roots, size=size, head_size=head_size, head_root=head_root):
        return None
    if issued is not None and issued > size and issued > head_size:
        return None
    with connection.connection.cursor() as cursor:
        for node_level in range(level + 1, 64):
            stop = head_size >> node_level
            if not stop:
                break
            if not _lean_nodes_match(cursor, node_level, 0, stop, upper[node_level]):
                return None
    return LedgerVerification(
        ok=True,
        size=size,
        root_hash=root.hex(),
        tree_heads_checked=run.checked,
        problems=[],
        warnings=run.warnings,
        pending=size - head_size,
    )


_NODE_CHUNK_LEVEL = 11  # nodes are checked 2**11 leaves at a time, then the tops above


def _check_nodes(cursor: Any, size: int) -> list[LedgerProblem]:
    """The stored interior nodes (consent_merklenode) that inclusion and consistency proofs are
    built from: each must be the hash of the two hashes below it, recomputed from the stored
    leaf hashes (a stored leaf hash that is malformed is reported with its row; the nodes above
    it are then not). Never raises: a node table that cannot be read is one problem."""
    problems: list[LedgerProblem] = []
    chunk = 1 << _NODE_CHUNK_LEVEL
    try:
        tops: list[bytes | None] = []
        for start in range(0, size, chunk):
            end = min(size, start + chunk)
            cursor.execute(
                "SELECT seq, leaf_hash FROM consent_ledgerevent WHERE seq >= %s AND seq < %s", [start, end]
            )
            leaves: dict[int, bytes | None] = {}
            for seq, value in cursor.fetchall():
                if type(seq) is int:
                    leaves[seq] = None if seq in leaves else _digest_or_none(value)
            below = [leaves.get(seq) for seq in range(start, end)]
            above = _compare_levels(cursor, below, 0, start, _NODE_CHUNK_LEVEL, problems)
            if end - start == chunk:
                tops.append(above[0])
        _compare_levels(cursor, tops, _NODE_CHUNK_LEVEL, 0, 64, problems)
    except Exception as exc:
        problems.append(
            LedgerProblem(
                kind="unreadable", detail=f"the stored Merkle nodes could not be read ({type(exc).__name__})"
            )
        )
    return problems[:100]


_NODES_SQL = (
    'SELECT level, "index", hash FROM consent_merklenode WHERE level >= 1 AND level < 64 '
    'AND "index" >= 0 AND "index" < (%s::bigint >> level) ORDER BY level, "index"'
)


def _nodes_match(vendor: str, size: int, digests: list[Any]) -> bool:
    """True when the stored interior nodes of the tree of `size` leaves are exactly the ones the
    fast path computed (`digests`: per level, SHA-256 of the node hashes in index order): one
    ordered pass over consent_merklenode, in place of `_check_nodes`' reads and hashes. False
    on any difference (a node missing, repeated, malformed or different): `_check_nodes` then
    finds and reports it. Only valid when every leaf of the tree was its row's stored one."""
    keys = _node_keys(size)
    stored = [_sha256() for _ in range(65)]
    rows: Any
    if vendor == "postgresql":
        raw = connection.connection
        rows = psycopg.ServerCursor(raw, f"verify_nodes_{uuid.uuid4().hex}", withhold=raw.autocommit)
    else:
        rows = connection.chunked_cursor()
    try:
        with connection.wrap_database_errors:
            if vendor == "postgresql":
                rows.execute(_NODES_SQL, [size], binary=True)
            else:
                rows.execute(_NODES_SQL.replace("%s::bigint", "%s"), [size])
            while batch := rows.fetchmany(5_000):
                for level, index, digest in batch:
                    if (level, index) != next(keys, None) or type(digest) is not bytes or len(digest) != 32:
                        return False
                    stored[level].update(digest)
    except Exception:
        return False  # _check_nodes reads again and says what is wrong
    finally:
        rows.close()
    if next(keys, None) is not None:
        return False
    return all(stored[level].digest() == digests[level].digest() for level in range(1, 64))


def _node_keys(size: int) -> Iterator[tuple[int, int]]:
    """(level, index) of every interior node of a tree of `size` leaves, by level then index."""
    level = 1
    while size >> level:
        for index in range(size >> level):
            yield level, index
        level += 1


def _digest_or_none(value: Any) -> bytes | None:
    try:
        return _digest(value, "hash")
    except _Malformed:
        return None


def _compare_levels(
    cursor: Any, hashes: list[bytes | None], level: int, offset: int, top: int, problems: list[LedgerProblem]
) -> list[bytes | None]:
    """Check the stored nodes above `hashes` (the expected hashes at `level`, from index
    `offset`, aligned on 2**level leaves) up to level `top`; the expected hashes reached."""
    while level < top and len(hashes) >= 2:
        level += 1
        offset //= 2
        count = len(hashes) // 2
        cursor.execute(
            'SELECT "index", hash FROM consent_merklenode '
            'WHERE level = %s AND "index" >= %s AND "index" < %s',
            [level, offset, offset + count],
        )
        stored: dict[int, list[Any]] = {}
        for index, value in cursor.fetchall():
            if type(index) is int:
                stored.setdefault(index, []).append(value)
        expected: list[bytes | None] = []
        for i in range(count):
            left, right = hashes[2 * i], hashes[2 * i + 1]
            digest = merkle.node_hash(left, right) if left is not None and right is not None else None
            expected.append(digest)
            found = stored.get(offset + i, [])
            if digest is None or (len(found) == 1 and _digest_or_none(found[0]) == digest):
                continue
            if not found:
                state = "is missing"
            elif len(found) > 1:
                state = "is stored more than once"
            elif _digest_or_none(found[0]) is None:
                state = f"is malformed ({_show(found[0])})"
            else:
                state = "does not match the hashes below it"
            first, last = (offset + i) << level, ((offset + i + 1) << level) - 1
            problems.append(
                LedgerProblem(
                    kind="node",
                    seq=first,
                    detail=f"stored Merkle node (level {level}, index {offset + i}) over events "
                    f"#{first}..#{last} {state}: proofs through it would not verify",
                )
            )
        hashes = expected
    return hashes


def _uuid_or_show(value: Any) -> str:
    try:
        return _uuid(value, "id") or ""
    except _Malformed:
        return _show(value)


def _reason(exc: Exception) -> str:
    if isinstance(exc, _Malformed):
        return str(exc)
    return f"a value cannot be hashed ({type(exc).__name__})"


# --- Checked reads for the pages that show or sign rows --------------------------------------
#
# The DPO console and API, the exports and the receipt endpoints read events through the ORM,
# whose conversion of a malformed stored value raises (issue 9, finding 10, same class). They
# first check the rows they are about to read with the verifier's parser: a row that would not
# verify is reported (and not shown, exported or signed) instead of failing.


def rows_check(pk_sql: str, params: Sequence[Any], *, max_problems: int = 20) -> list[LedgerProblem]:
    """Problems of the stored events whose id is selected by the SQL subquery `pk_sql`.

    Each row is read raw and parsed as `verify` parses it (every column well-formed, copied
    values consistent, the columns hashing to the stored leaf hash); a malformed sequence
    number is reported with the position(s) its absence leaves empty. [] when all are sound.
    """

    vendor = connection.vendor
    select = _event_sql(vendor).replace("ORDER BY e.seq", f"WHERE e.id IN ({pk_sql})\nORDER BY e.seq")
    problems: list[LedgerProblem] = []
    connection.ensure_connection()
    raw = connection.connection
    previous = getattr(raw, "text_factory", None)
    if vendor == "sqlite":
        raw.text_factory = functools.partial(str, encoding="utf-8", errors="surrogateescape")
    try:
        with connection.cursor() as cursor:
            reference = _Reference(cursor)
        bad_seq = False
        rows = connection.chunked_cursor()  # a server-side cursor on PostgreSQL, as `verify`
        try:
            rows.execute(select, list(params))
            while len(problems) < max_problems and (batch := rows.fetchmany(2_000)):
                for values in batch:
                    problem = _row_problem(values, vendor, reference)
                    if problem is not None:
                        bad_seq = bad_seq or problem.seq is None
                        problems.append(problem)
        finally:
            rows.close()
        problems = problems[:max_problems]
        with connection.cursor() as cursor:
            if bad_seq:
                problems.extend(_missing_positions(cursor))
            # The ORM's join to the subject would silently drop a row naming no subject.
            cursor.execute(
                "SELECT e.seq, e.id FROM consent_ledgerevent e LEFT JOIN consent_subject s "  # noqa: S608
                f"ON s.id = e.subject_id WHERE s.id IS NULL AND e.id IN ({pk_sql})",
                list(params),
            )
            for seq, event_id in cursor.fetchall()[:max_problems]:
                shown = _uuid_or_show(event_id)
                problems.append(
                    LedgerProblem(
                        kind="malformed",
                        seq=seq if type(seq) is int else None,
                        event_id=shown,
                        detail=f"event #{_show(seq)} ({shown}) names a subject that does not exist",
                    )
                )
    finally:
        if vendor == "sqlite":
            raw.text_factory = previous
    return problems


def _row_problem(values: tuple[Any, ...], vendor: str, reference: _Reference) -> LedgerProblem | None:
    """The problem of one stored row read by `_event_sql`, or None when it is sound."""
    seq = values[1] if type(values[1]) is int else None
    event_id = _uuid_or_show(values[0])
    if seq is None:
        return LedgerProblem(
            kind="malformed",
            event_id=event_id,
            detail=f"event {event_id} has a malformed sequence number {_show(values[1])}",
        )
    try:
        row = _event_row(values, vendor, reference)
        if merkle.leaf_hash(entry_bytes(row)) != _digest(values[16], "leaf_hash"):
            raise _Malformed("its columns no longer hash to its leaf")
    except Exception as exc:
        return LedgerProblem(
            kind="malformed",
            seq=seq,
            event_id=event_id,
            detail=f"event #{seq} ({event_id}) was altered: {_reason(exc)}",
        )
    return None


def _missing_positions(cursor: Any, limit: int = 10) -> list[LedgerProblem]:
    """The sequence numbers absent from 0..n-1 (a row whose number was overwritten leaves one)."""
    cursor.execute("SELECT COUNT(*) FROM consent_ledgerevent")
    total = int(cursor.fetchone()[0])
    cursor.execute("SELECT seq FROM consent_ledgerevent ORDER BY seq")
    present = {value for (value,) in cursor.fetchall() if type(value) is int}
    missing = [seq for seq in range(total) if seq not in present][:limit]
    return [LedgerProblem(kind="missing", seq=seq, detail=f"event #{seq} is missing") for seq in missing]
