"""Fill a throwaway PostgreSQL database with residents and a large consent ledger.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cum_bench_scale \
        .venv/bin/python bench/generate.py --residents 1000000 --events 10000000

Refuses to run unless the database is PostgreSQL and its name contains `bench`, and never
under production settings (`DJANGO_ENV=production`). Migrate the database first
(`manage.py migrate`); the rows are added to what is there (run it twice, get twice as many).

What it writes, per resident (the columns the application itself writes):
- an account (`identity_user`, an Argon2id hash of a random password nobody knows);
- one browser session (`identity_browsersession`, live);
- one access token and its refresh token (`identity_accesstoken`, `identity_refreshtoken`) for
  a partner client named `bench-generated` (created if absent): the token columns hold a
  random-looking string and its SHA-256, as the real rows do (a real access token is a signed
  JWT of ~800 bytes; these are ~50 characters, so the table is smaller than in production);
- its consent subject (`consent_subject`, with its own wrapped data key, `consent.crypto`);
then `--events` ledger events spread round-robin over the residents (resident `s % R` gets
event `s`), each on one of the seeded purposes in turn, alternately given and withdrawn,
with the current notice, spread over the past year in sequence order; each resident's current
state per purpose (`consent_consentstate`) is its last event.

The ledger is the real one: every leaf hash is `merkle.leaf_hash(ledger.entry_bytes(row))`
over the very values written (what `consent.ledger.append` computes), the Merkle nodes are
those `merkle.frontier_append` completes, the head row gets the final size, frontier and root,
and a tree head is signed at the end (`ledger.tree_head_create`). The generator continues an
existing ledger from its head, so `manage.py verify_ledger` passes afterwards.

Speed: PostgreSQL makes the rows (INSERT … SELECT over generate_series; Python only wraps
each subject's data key, streamed with COPY). The identifiers are derived from the run's
random key (MD5, shaped as version-4 UUIDs; session ids and token values likewise), so each
table's rows are computed from the resident's or the event's position alone, without joins.
Each event's entry is concatenated in SQL from a template that `entry_template` cuts out of
`ledger.entry_bytes` itself (the varying values replaced by sentinels), and its leaf hash is
PostgreSQL's sha256(0x00 || entry); the Merkle nodes are then built level by level in SQL
(node i of level L+1 = sha256(0x01 || node 2i || node 2i+1 of level L)) and the frontier read
back from them. While the tables are loaded their indexes are dropped and built afterwards
(CREATE INDEX sorts once instead of maintaining B-trees row by row at random places; for the
ledger also its primary key and the states' foreign key to it); the foreign-key triggers are
off for this session (`session_replication_role = replica`, which needs a superuser; the rows
are consistent by construction). `ANALYZE` runs at the end. With `--connections 2` (the
default of the command) the accounts are written on a second connection at the same time as
the ledger, in a second transaction committed just before the ledger's (a failure in either
rolls both back): two backends, one per core. `generate()` is the entry point the tests call
on their own throwaway test database (tests/perf/test_generate.py), one connection unless
told otherwise.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import io
import os
import secrets
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import django
import psycopg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH_CLIENT_ID = "bench-generated"
# Rows per chunk written to COPY (bounded memory; each chunk is one write).
_CHUNK = 20_000


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--residents", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seed", default="", help="makes event ids reproducible (default: random)")
    parser.add_argument(
        "--connections",
        type=int,
        choices=(1, 2),
        default=2,
        help="2 (default): the accounts on a second connection while the ledger is written",
    )
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.db import connection  # noqa: PLC0415 - after django.setup()

    problem = target_problem(connection)
    if problem:
        print(f"refusing to run: {problem}", file=sys.stderr)
        return 2
    started = time.monotonic()
    figures = generate(
        residents=args.residents,
        events=args.events,
        seed=args.seed,
        progress=_print,
        connections=args.connections,
    )
    figures["total_s"] = round(time.monotonic() - started, 1)
    for key, value in figures.items():
        print(f"{key}: {value}")
    return 0


def _print(message: str) -> None:
    print(f"[{datetime.now(UTC):%H:%M:%S}] {message}", flush=True)


def target_problem(connection: Any) -> str:
    """Why the generator must not write to this database, or '' when it may."""
    from django.conf import settings  # noqa: PLC0415 - after django.setup()

    if settings.PRODUCTION:
        return "DJANGO_ENV=production: the generator never runs under production settings"
    if connection.vendor != "postgresql":
        return f"the database is {connection.vendor}, not PostgreSQL"
    name = str(connection.settings_dict["NAME"])
    if "bench" not in name:
        return f"database {name!r}: its name must contain 'bench'"
    return ""


# --- the generator ---------------------------------------------------------------------------

# The form of a timestamp in a leaf entry: `consent.ledger.format_time` (strftime
# "%Y-%m-%dT%H:%M:%S.%fZ", in UTC) as PostgreSQL's to_char writes it.
_ENTRY_TIME = "to_char({} AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
# The entry's values that vary from event to event, as SQL over the row being inserted (`e`).
_ENTRY_VARIABLES = {
    "id": "e.id::text",
    "seq": "e.seq::text",
    "subject": "e.subject_id::text",
    "at": _ENTRY_TIME.format("e.occurred_at"),
    "valid_until": _ENTRY_TIME.format("e.valid_until"),
}
# Values no real entry holds, each found exactly once in a template entry and replaced there.
_SENTINELS: dict[str, Any] = {
    "id": uuid.UUID("5e5e5e5e-1d1d-4d1d-8d1d-5e5e5e5e5e5e"),
    "seq": 987_654_321_987_654_321,
    "subject": uuid.UUID("5e5e5e5e-50b5-450b-850b-5e5e5e5e5e5e"),
    "at": datetime(1901, 2, 3, 4, 5, 6, 789_012, tzinfo=UTC),
    "valid_until": datetime(1902, 3, 4, 5, 6, 7, 890_123, tzinfo=UTC),
}


def _uuid_sql(text: str) -> str:
    """SQL: a version-4-shaped UUID from the MD5 of a text (`text` is SQL): random-looking as
    uuid4() is when the text holds the run's random key, computable again from the position."""
    return f"overlay(overlay(md5({text}) placing '4' from 13 for 1) placing '8' from 17 for 1)::uuid"


def _user_id_sql(i: str) -> str:
    return _uuid_sql(f"%(key)s || ':user:' || {i}")


def _subject_id_sql(r: str) -> str:
    return _uuid_sql(f"%(key)s || ':subject:' || {r}")


def _event_id_sql(seq: str) -> str:
    return _uuid_sql(f"%(key)s || ':event:' || {seq}")


def _sid_sql(i: str) -> str:
    """SQL: resident i's session id, 43 URL-safe characters as `secrets.token_urlsafe(32)`."""
    digest = f"sha256(convert_to(%(key)s || ':sid:' || {i}, 'UTF8'))"
    return f"translate(rtrim(encode({digest}, 'base64'), '='), '+/', '-_')"


def _occurred_sql(n: str) -> str:
    """SQL: when event n (0-based in this run) occurred, spread over the past year in order."""
    return f"(%(first)s::timestamptz + floor({n} * %(step_us)s::float8) * interval '1 microsecond')"


def entry_template(row: dict[str, Any]) -> list[tuple[str, str]]:
    """The canonical entry of `row` (`consent.ledger.entry_bytes`, the very function the
    verifier uses) as (literal, SQL) pieces: the literal text up to a varying value, then the
    SQL that writes that value; the last SQL is ''. `row` holds the constant columns; the
    varying ones (id, seq, subject, occurred_at and, when not None, valid_until) are replaced
    by sentinels, found in the entry and cut out, so that the SQL concatenation is the entry
    byte for byte whatever its form (key order, escapes, constants)."""
    from consent import ledger  # noqa: PLC0415 - after django.setup()

    sample = dict(row)
    sample.update(
        id=_SENTINELS["id"],
        seq=_SENTINELS["seq"],
        subject_id=_SENTINELS["subject"],
        occurred_at=_SENTINELS["at"],
    )
    names = ["id", "seq", "subject", "at"]
    if row.get("valid_until") is not None:
        sample["valid_until"] = _SENTINELS["valid_until"]
        names.append("valid_until")
    entry = ledger.entry_bytes(sample).decode("utf-8")
    found = []
    for name in names:
        value = _SENTINELS[name]
        text = ledger.format_time(value) if isinstance(value, datetime) else str(value)
        if entry.count(text) != 1:
            raise RuntimeError(f"the ledger entry's form changed: {name} is not found once in {entry!r}")
        found.append((entry.index(text), len(text), _ENTRY_VARIABLES[name]))
    pieces = []
    position = 0
    for index, length, sql in sorted(found):
        pieces.append((entry[position:index], sql))
        position = index + length
    pieces.append((entry[position:], ""))
    return pieces


def _entry_sql(pieces: list[tuple[str, str]], params: dict[str, Any]) -> str:
    """SQL concatenating the template's pieces; the literals go into `params`."""
    parts = []
    for number, (literal, sql) in enumerate(pieces):
        params[f"piece{number}"] = literal
        parts.append(f"%(piece{number})s::text")
        if sql:
            parts.append(sql)
    return " || ".join(parts)


def _text(value: Any) -> str:
    """A value in COPY's text format (our values hold no tab, newline or backslash)."""
    if value is None:
        return "\\N"
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\\\x" + bytes(value).hex()
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bool):
        return "t" if value else "f"
    return str(value)


def _copy(cursor: Any, table: str, columns: tuple[str, ...], rows: Iterator[tuple[Any, ...]]) -> int:
    count = 0
    names = ", ".join(f'"{column}"' for column in columns)
    with cursor.copy(f'COPY "{table}" ({names}) FROM STDIN') as copy:
        buffer = io.StringIO()
        for row in rows:
            buffer.write("\t".join(map(_text, row)))
            buffer.write("\n")
            count += 1
            if count % _CHUNK == 0:
                copy.write(buffer.getvalue())
                buffer = io.StringIO()
        copy.write(buffer.getvalue())
    return count


def _next_id(cursor: Any, table: str) -> int:
    cursor.execute(f'SELECT COALESCE(MAX(id), 0) + 1 FROM "{table}"')
    return int(cursor.fetchone()[0])


def _sync_identity(cursor: Any, table: str) -> None:
    cursor.execute(
        f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'), COALESCE(MAX(id), 1)) FROM \"{table}\""
    )


def _bench_client() -> Any:
    from oauth2_provider.models import get_application_model  # noqa: PLC0415 - after django.setup()

    model = get_application_model()
    client = model.objects.filter(client_id=BENCH_CLIENT_ID).first()
    if client is None:
        client = model(
            client_id=BENCH_CLIENT_ID,
            name="Bench (generated tokens)",
            client_type=model.CLIENT_CONFIDENTIAL,
            authorization_grant_type=model.GRANT_AUTHORIZATION_CODE,
            redirect_uris="https://rp.bench.example/callback",
            client_secret="",
            hash_client_secret=False,
        )
        client.save()
    return client


def encoding_problem(cursor: Any) -> str:
    """Why PostgreSQL cannot write the entries here, or '': the leaf hash is the SHA-256 of the
    entry's UTF-8 bytes, and `convert_to(…, 'UTF8')` gives them only from a UTF8 database (the
    literals sent as UTF-8 too)."""
    cursor.execute("SELECT current_setting('server_encoding'), current_setting('client_encoding')")
    server, client = cursor.fetchone()
    if server != "UTF8" or client != "UTF8":
        return f"the database's encoding is {server} (client {client}), not UTF8"
    return ""


def generate(
    *,
    residents: int,
    events: int,
    seed: str = "",
    progress: Callable[[str], None] = lambda _m: None,
    rebuild_indexes: bool | None = None,
    connections: int = 1,
) -> dict[str, Any]:
    """Add `residents` residents (session, tokens, consent subject) and `events` ledger events.

    Returns figures (rows and seconds per phase). Call inside a configured Django process on
    PostgreSQL; the CLI checks the target first (`target_problem`). `rebuild_indexes`: drop the
    indexes of the tables loaded (`_ACCOUNT_TABLES`, `_LEDGER_TABLES`) during their load and
    build them after (default: from 100,000 residents, from 100,000 events on). `connections`
    2: the accounts are written on a second connection, in a second transaction, at the same
    time as the ledger (`_AccountsWorker`; committed just before the ledger's transaction, so a
    failure in either leaves nothing, short of a failure of that last commit); 1: everything in
    the caller's transaction (what the tests use).
    """
    from django.contrib.auth.hashers import make_password  # noqa: PLC0415 - after django.setup()
    from django.db import connection, transaction  # noqa: PLC0415

    from consent import ledger, merkle  # noqa: PLC0415
    from consent.models import Purpose  # noqa: PLC0415
    from consent.services import current_notice  # noqa: PLC0415
    from identity.keys import signing_keys_ensure  # noqa: PLC0415

    if residents < 1 or events < 0:
        raise ValueError("at least one resident, and a non-negative number of events")
    if connections not in (1, 2):
        raise ValueError("one connection or two")
    rebuild_accounts = residents >= 100_000 if rebuild_indexes is None else rebuild_indexes
    rebuild_ledger = events >= 100_000 if rebuild_indexes is None else rebuild_indexes
    figures: dict[str, Any] = {"residents": residents, "events": events}
    seed_bytes = hashlib.blake2b((seed or secrets.token_hex(16)).encode(), digest_size=32).digest()
    run = hashlib.blake2b(seed_bytes + b"run", digest_size=4).hexdigest()
    # The generated residents' addresses are bench-<run>-<i>@bench.example.
    figures["run"] = run
    now = datetime.now(UTC).replace(microsecond=0)
    client = _bench_client()
    purposes = list(Purpose.objects.filter(is_active=True).order_by("id"))
    if not purposes:
        raise RuntimeError("no active purpose: migrate the database first")
    notices = {purpose.id: current_notice(purpose) for purpose in purposes}
    password = make_password(secrets.token_urlsafe(24))
    # The key of the identifiers derived in SQL (accounts, subjects, sessions, events, tokens).
    key = seed_bytes.hex()

    worker: _AccountsWorker | None = None
    with contextlib.ExitStack() as cleanup, transaction.atomic(), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # psycopg's own cursor, for copy()
        problem = encoding_problem(cursor)
        if problem:
            raise RuntimeError(f"cannot generate: {problem}")
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET LOCAL synchronous_commit = off")
        cursor.execute("SET LOCAL work_mem = '64MB'")

        # --- residents, sessions, tokens, subjects ----------------------------------------
        accounts = {
            "key": key,
            "run": run,
            "password": password,
            "residents": residents,
            "client_pk": client.pk,
            "now": now,
            "rebuild": rebuild_accounts,
            "progress": progress,
        }
        if connections == 1:
            figures.update(_accounts(cursor, **accounts))
        else:
            params = connection.get_connection_params()
            params.update(cursor_factory=psycopg.ClientCursor, autocommit=False)
            worker = _AccountsWorker(params, **accounts)
            cleanup.callback(worker.close)  # after the ledger's transaction ends, whichever way
            worker.start()

        # --- the ledger -------------------------------------------------------------------
        t = time.monotonic()
        ledger.integrate_all()  # events appended but not yet in the tree come first
        head = ledger.lock_head()
        start, _frontier = ledger.head_check(head)
        restore = _indexes_drop(cursor, _LEDGER_TABLES, referenced=True) if rebuild_ledger else []
        step_us = timedelta(days=365).total_seconds() * 1_000_000 / max(events, 1)
        first_time = now - timedelta(days=365)
        count = len(purposes)
        timing = {"first": first_time, "step_us": step_us, "key": key}

        # Resident r gets events r, r + R, r + 2R…: event n is resident n % R's j-th, j = n // R,
        # on purpose slot j % count, given when (j // count) is even, else withdrawn. The events
        # of one j (a block of R) share their purpose and type: one INSERT … SELECT per block,
        # whose entry template (`entry_template`) holds those constants.
        figures["ledger_events"] = 0
        for j in range((events + residents - 1) // residents):
            slot = j % count
            purpose = purposes[slot]
            notice = notices[purpose.id]
            event_type = "given" if (j // count) % 2 == 0 else "withdrawn"
            lifetime = purpose.consent_lifetime_days if event_type == "given" else None
            constants = {
                "event_type": event_type,
                "purpose_code": purpose.code,
                "notice_id": notice.id if notice else None,
                "notice_version": notice.version if notice else None,
                "notice_sha256": notice.content_sha256 if notice else "",
                "collection_method": "web_form",
                "actor_type": "resident",
                "actor_id": "",
                "partner_client_id": "",
                "valid_until": _SENTINELS["valid_until"] if lifetime else None,
                "linked_from": None,
                "details_ciphertext": None,
            }
            params = dict(timing)
            entry = _entry_sql(entry_template(constants), params)
            valid_until = (
                f"{_occurred_sql('n')} + interval '24 hours' * %(lifetime)s"
                if lifetime
                else "NULL::timestamptz"
            )
            params.update(
                constants,
                valid_until=None,
                lifetime=lifetime,
                purpose_id=purpose.id,
                start=start,
                residents=residents,
                lo=j * residents,
                hi=min((j + 1) * residents, events) - 1,
            )
            cursor.execute(
                f"""
                INSERT INTO consent_ledgerevent (id, seq, event_type, purpose_code, notice_version,
                    notice_sha256, collection_method, actor_type, actor_id, partner_client_id,
                    occurred_at, valid_until, linked_from, details_ciphertext, leaf_hash, notice_id,
                    purpose_id, subject_id)
                SELECT e.id, e.seq, %(event_type)s, %(purpose_code)s, %(notice_version)s, %(notice_sha256)s,
                    %(collection_method)s, %(actor_type)s, %(actor_id)s, %(partner_client_id)s, e.occurred_at,
                    e.valid_until, NULL, NULL, sha256('\\x00'::bytea || convert_to({entry}, 'UTF8')),
                    %(notice_id)s, %(purpose_id)s, e.subject_id
                FROM (SELECT {_event_id_sql("(%(start)s::bigint + n)")} AS id, %(start)s::bigint + n AS seq,
                             {_subject_id_sql("mod(n, %(residents)s::bigint)")} AS subject_id,
                             {_occurred_sql("n")} AS occurred_at, {valid_until} AS valid_until
                      FROM generate_series(%(lo)s::bigint, %(hi)s::bigint) AS n) AS e
                """,
                params,
            )
            figures["ledger_events"] += cursor.rowcount
            progress(f"ledger events: {figures['ledger_events']} ({round(time.monotonic() - t, 1)} s)")
        size = start + events
        figures["events_s"] = round(time.monotonic() - t, 1)

        t2 = time.monotonic()
        figures["merkle_nodes"] = _merkle_nodes(cursor, start, size)
        frontier = _frontier_read(cursor, size)
        figures["merkle_s"] = round(time.monotonic() - t2, 1)
        progress(f"Merkle nodes ({figures['merkle_s']} s)")

        # Each resident's current state per purpose: its last event there. Resident r has
        # k = ceil((events - r) / R) events (j < k); its last on slot p is the largest j < k with
        # j % count == p, which exists when p < k, i.e. r < events - p * R.
        t2 = time.monotonic()
        figures["consent_states"] = 0
        for slot, purpose in enumerate(purposes):
            top = min(residents, events - slot * residents)
            if top <= 0:
                break
            lifetime = purpose.consent_lifetime_days
            given = "mod(s.j / %(count)s::bigint, 2) = 0"
            valid_until = (
                f"CASE WHEN {given} THEN {_occurred_sql('s.n')} + interval '24 hours' * %(lifetime)s END"
                if lifetime
                else "NULL"
            )
            params = dict(timing)
            params.update(
                lifetime=lifetime,
                count=count,
                slot=slot,
                residents=residents,
                events=events,
                start=start,
                now=now,
                purpose_id=purpose.id,
                top=top - 1,
            )
            cursor.execute(
                f"""
                INSERT INTO consent_consentstate (status, valid_until, renewal_required, updated_at, event_id,
                    purpose_id, subject_id)
                SELECT CASE WHEN {given} THEN 'given' ELSE 'withdrawn' END, {valid_until}, false, %(now)s,
                    {_event_id_sql("(%(start)s::bigint + s.n)")}, %(purpose_id)s, {_subject_id_sql("s.r")}
                FROM (SELECT a.r, a.j, a.r + a.j * %(residents)s::bigint AS n
                      FROM (SELECT r, %(slot)s::bigint + ((%(events)s::bigint - r + %(residents)s::bigint - 1)
                                   / %(residents)s::bigint - 1 - %(slot)s::bigint) / %(count)s::bigint
                                   * %(count)s::bigint AS j
                            FROM generate_series(0::bigint, %(top)s::bigint) AS r) AS a) AS s
                """,
                params,
            )
            figures["consent_states"] += cursor.rowcount
        figures["states_s"] = round(time.monotonic() - t2, 1)
        progress(f"{figures['consent_states']} consent states ({figures['states_s']} s)")

        head.size = size
        head.frontier = b"".join(frontier)
        head.root_hash = merkle.frontier_root(frontier)
        head.updated_at = datetime.now(UTC)
        head.save(update_fields=["size", "frontier", "root_hash", "updated_at"])
        # The leaf-index counter follows the events written here (the next append takes `size`).
        cursor.execute(
            "INSERT INTO consent_ledgersequence (id, next_seq) VALUES (1, %s) "
            "ON CONFLICT (id) DO UPDATE SET next_seq = EXCLUDED.next_seq",
            [size],
        )
        figures["ledger_s"] = round(time.monotonic() - t, 1)
        t = time.monotonic()
        _indexes_restore(cursor, restore)
        figures["indexes_s"] = round(time.monotonic() - t, 1)
        progress(f"indexes rebuilt ({figures['indexes_s']} s)")
        # The DPO statistics' daily counts of the events just integrated (the sequencer's job
        # for appended events): one GROUP BY over them.
        t = time.monotonic()
        ledger.daily_counts_add(start, size)
        figures["daily_counts_s"] = round(time.monotonic() - t, 1)
        progress(f"daily counts ({figures['daily_counts_s']} s)")
        # Back to the defaults: what follows in the caller's transaction (a test's) runs with
        # its foreign keys and append-only triggers checked again.
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")
        cursor.execute("SET LOCAL synchronous_commit = DEFAULT")
        cursor.execute("SET LOCAL work_mem = DEFAULT")
        signing_keys_ensure()
        ledger.tree_head_create()
        if worker is not None:
            figures.update(worker.result())  # raises the accounts' error: all rolled back
            worker.commit()

    t = time.monotonic()
    with connection.cursor() as cursor:
        for table in (
            "identity_user",
            "identity_browsersession",
            "identity_accesstoken",
            "identity_refreshtoken",
            "consent_subject",
            "consent_ledgerevent",
            "consent_merklenode",
            "consent_consentstate",
            "consent_dailycount",
        ):
            cursor.execute(f'ANALYZE "{table}"')
    figures["analyze_s"] = round(time.monotonic() - t, 1)
    progress("analysed")
    return figures


def _accounts(
    cursor: Any,
    *,
    key: str,
    run: str,
    password: str,
    residents: int,
    client_pk: int,
    now: datetime,
    rebuild: bool,
    progress: Callable[[str], None],
) -> dict[str, Any]:
    """Residents, their sessions, tokens and consent subjects: rows made by PostgreSQL (the
    subjects' wrapped keys by Python). `cursor` is a psycopg cursor of the generator's
    transaction, or of the second connection's (`_AccountsWorker`)."""
    from consent import crypto  # noqa: PLC0415 - after django.setup()

    out: dict[str, Any] = {}
    t = time.monotonic()
    account_restore = _indexes_drop(cursor, _ACCOUNT_TABLES, referenced=False) if rebuild else []
    created = now - timedelta(days=400)
    signed_in = now - timedelta(minutes=30)
    expires = now + timedelta(hours=1)
    last = residents - 1
    cursor.execute(
        f"""
        INSERT INTO identity_user (id, password, last_login, is_superuser, email, email_verified,
            given_name, family_name, preferred_language, is_active, is_staff, created_at, updated_at,
            country, locality, phone_number, phone_number_verified, postal_code, region, street_address)
        SELECT {_user_id_sql("i")}, %(password)s, NULL, false,
            'bench-' || %(run)s || '-' || i || '@bench.example', true, 'Prénom' || i, 'Nom' || i, 'fr',
            true, false, %(created)s, %(created)s,
            'France', 'Nantes', '', false, '44000', 'Pays de la Loire', i || ' rue du Banc'
        FROM generate_series(0::bigint, %(last)s::bigint) AS i
        """,
        {"key": key, "password": password, "run": run, "created": created, "last": last},
    )
    out["users"] = cursor.rowcount
    progress(f"{residents} residents")

    session_start = _next_id(cursor, "identity_browsersession")
    cursor.execute(
        f"""
        INSERT INTO identity_browsersession (id, sid, created_at, auth_time, amr, acr, user_agent, device,
            last_seen_at, ended_at, end_reason, session_key_encrypted, user_id)
        SELECT %(start)s::bigint + i, {_sid_sql("i")}, %(at)s, %(at)s, '["pwd"]', '', 'bench', '', %(at)s,
            NULL, '', NULL, {_user_id_sql("i")}
        FROM generate_series(0::bigint, %(last)s::bigint) AS i
        """,
        {"key": key, "start": session_start, "at": signed_in, "last": last},
    )
    out["sessions"] = cursor.rowcount
    _sync_identity(cursor, "identity_browsersession")
    progress("sessions")

    # The token columns: a random-looking string and its SHA-256, as the real rows.
    access_start = _next_id(cursor, "identity_accesstoken")
    refresh_start = _next_id(cursor, "identity_refreshtoken")
    cursor.execute(
        f"""
        INSERT INTO identity_accesstoken (id, token, token_checksum, expires, scope, resource, created,
            updated, application_id, id_token_id, source_refresh_token_id, user_id, sid, claims_request)
        SELECT %(start)s::bigint + t.i, t.value, encode(sha256(convert_to(t.value, 'UTF8')), 'hex'),
            %(expires)s, 'openid profile email', '[]', %(at)s, %(at)s, %(client)s, NULL, NULL,
            {_user_id_sql("t.i")}, {_sid_sql("t.i")}, NULL
        FROM (SELECT i, 'at-' || %(run)s || '-' || i || '-' || md5(%(key)s || ':at:' || i) AS value
              FROM generate_series(0::bigint, %(last)s::bigint) AS i) AS t
        """,
        {
            "key": key,
            "start": access_start,
            "run": run,
            "expires": expires,
            "at": signed_in,
            "client": client_pk,
            "last": last,
        },
    )
    out["access_tokens"] = cursor.rowcount
    _sync_identity(cursor, "identity_accesstoken")
    cursor.execute(
        f"""
        INSERT INTO identity_refreshtoken (id, token, token_checksum, token_family, resource, created,
            updated, revoked, auth_time, access_token_id, application_id, user_id, sid, acr, amr,
            claims_request, dpop_jkt)
        SELECT %(start)s::bigint + t.i, t.value, encode(sha256(convert_to(t.value, 'UTF8')), 'hex'),
            gen_random_uuid(), '[]', %(at)s, %(at)s, NULL, %(at)s, %(access_start)s::bigint + t.i,
            %(client)s, {_user_id_sql("t.i")}, {_sid_sql("t.i")}, '', '["pwd"]', NULL, ''
        FROM (SELECT i, 'rt-' || %(run)s || '-' || i || '-' || md5(%(key)s || ':rt:' || i) AS value
              FROM generate_series(0::bigint, %(last)s::bigint) AS i) AS t
        """,
        {
            "key": key,
            "start": refresh_start,
            "access_start": access_start,
            "run": run,
            "at": signed_in,
            "client": client_pk,
            "last": last,
        },
    )
    out["refresh_tokens"] = cursor.rowcount
    _sync_identity(cursor, "identity_refreshtoken")
    progress("tokens")

    # Each subject's own data key, wrapped under the master key (consent.crypto): Python.
    cursor.execute(
        f"SELECT {_subject_id_sql('i')}, {_user_id_sql('i')} "
        "FROM generate_series(0::bigint, %(last)s::bigint) AS i",
        {"key": key, "last": last},
    )
    pairs = cursor.fetchall()
    out["subjects"] = _copy(
        cursor,
        "consent_subject",
        (
            "id",
            "kind",
            "browser_id_hash",
            "wrapped_key",
            "key_destroyed_at",
            "linked_at",
            "created_at",
            "user_id",
            "browser_secret_hash",
        ),
        (
            (
                subject_id,
                "account",
                None,
                crypto.new_wrapped_key(subject_id),
                None,
                None,
                created,
                user_id,
                "",
            )
            for subject_id, user_id in pairs
        ),
    )
    del pairs
    t2 = time.monotonic()
    _indexes_restore(cursor, account_restore)
    out["account_indexes_s"] = round(time.monotonic() - t2, 1)
    out["accounts_s"] = round(time.monotonic() - t, 1)
    progress(f"subjects ({out['accounts_s']} s for the accounts)")

    return out


class _AccountsWorker(threading.Thread):
    """`_accounts` on a second connection, in its own transaction, while the generator's
    connection writes the ledger (neither reads the other's rows; foreign-key triggers are
    off on both). Committed by `commit` once the ledger is written, rolled back otherwise."""

    def __init__(self, params: dict[str, Any], **arguments: Any) -> None:
        super().__init__(name="generate-accounts", daemon=True)
        self.connection = psycopg.connect(**params)
        self.arguments = arguments
        self.figures: dict[str, Any] = {}
        self.error: BaseException | None = None
        self.committed = False

    def run(self) -> None:
        try:
            with self.connection.cursor() as cursor:
                cursor.execute("SET session_replication_role = replica")
                cursor.execute("SET synchronous_commit = off")
                cursor.execute("SET work_mem = '64MB'")
                self.figures = _accounts(cursor, **self.arguments)
        except BaseException as exc:  # handed to the generator's thread by result()
            self.error = exc

    def result(self) -> dict[str, Any]:
        self.join()
        if self.error is not None:
            raise self.error
        return self.figures

    def commit(self) -> None:
        self.connection.commit()
        self.committed = True

    def close(self) -> None:
        """Stop (cancel the statement running), roll back unless committed, disconnect."""
        if self.is_alive():
            self.connection.cancel()
            self.join()
        if not self.committed:
            self.connection.rollback()
        self.connection.close()


def _merkle_nodes(cursor: Any, start: int, size: int) -> int:
    """Insert the Merkle nodes that the leaves start..size-1 complete, level by level in SQL:
    node i of level L+1 = SHA-256(0x01 || node 2i || node 2i+1 of level L), level 0 being the
    leaf hashes, for i from start >> (L+1) (the first node a new leaf completes) to
    size >> (L+1) (the last complete one); the older children are the stored ones. Raises
    RuntimeError when a child is missing (the count of a level falls short)."""
    total = 0
    level = 1
    while (hi := size >> level) > (lo := start >> level):
        if level == 1:
            children = (
                'SELECT seq AS "index", leaf_hash AS hash FROM consent_ledgerevent '
                "WHERE seq BETWEEN %(a)s AND %(b)s"
            )
        else:
            children = (
                'SELECT "index", hash FROM consent_merklenode '
                'WHERE level = %(child)s AND "index" BETWEEN %(a)s AND %(b)s'
            )
        cursor.execute(
            f"""
            INSERT INTO consent_merklenode (level, "index", hash)
            SELECT %(level)s, c."index" / 2, sha256('\\x01'::bytea || c.hash || c.right_hash)
            FROM (SELECT "index", hash, lead("index") OVER w AS right_index, lead(hash) OVER w AS right_hash
                  FROM ({children}) AS s WINDOW w AS (ORDER BY "index")) AS c
            WHERE mod(c."index", 2) = 0 AND c.right_index = c."index" + 1
            """,
            {"level": level, "child": level - 1, "a": 2 * lo, "b": 2 * hi - 1},
        )
        if cursor.rowcount != hi - lo:
            raise RuntimeError(
                f"Merkle level {level}: {cursor.rowcount} nodes made of {hi - lo} "
                f"(a child of level {level - 1} is missing)"
            )
        total += hi - lo
        level += 1
    return total


def _frontier_read(cursor: Any, size: int) -> list[bytes]:
    """The frontier of the tree of `size` leaves (`merkle.frontier_append`'s, left to right:
    the roots of its perfect subtrees, one per bit of the size), read from the stored nodes."""
    frontier = []
    position = 0
    for level in range(size.bit_length() - 1, -1, -1):
        if not size >> level & 1:
            continue
        if level == 0:
            cursor.execute("SELECT leaf_hash FROM consent_ledgerevent WHERE seq = %s", [position])
        else:
            cursor.execute(
                'SELECT hash FROM consent_merklenode WHERE level = %s AND "index" = %s',
                [level, position >> level],
            )
        found = cursor.fetchone()
        if found is None:
            raise RuntimeError(f"the Merkle subtree of level {level} at leaf {position} is not stored")
        frontier.append(bytes(found[0]))
        position += 1 << level
    return frontier


# Loaded in bulk: their indexes are built after the load (CREATE INDEX sorts once instead of
# maintaining B-trees row by row; the random keys, UUIDs and hashes, would touch a random page
# each). The ledger's tables lose every index (the states' foreign key to the events too), the
# accounts' tables those that no foreign key needs.
_LEDGER_TABLES = ("consent_ledgerevent", "consent_consentstate")
_ACCOUNT_TABLES = (
    "identity_user",
    "identity_browsersession",
    "identity_accesstoken",
    "identity_refreshtoken",
    "consent_subject",
)
# Kept: the events are inserted in its order (cheap to maintain), and the Merkle nodes read by it.
_KEPT = ("UNIQUE (seq)",)


def _indexes_drop(cursor: Any, tables: tuple[str, ...], *, referenced: bool) -> list[str]:
    """Drop the indexes of `tables` and the primary and unique constraints among them; return
    the statements that restore them, in order (indexes and keys first, then the foreign keys,
    which validate against them). `referenced`: also the keys that foreign keys reference, and
    those foreign keys; otherwise these keys stay (and the foreign keys untouched)."""
    cursor.execute(
        """
        SELECT conrelid::regclass::text, conname, pg_get_constraintdef(oid)
        FROM pg_constraint WHERE contype = 'f' AND confrelid = ANY(%s::regclass[]) ORDER BY conname
        """,
        [list(tables)],
    )
    foreign = cursor.fetchall() if referenced else []
    cursor.execute(
        """
        SELECT k.conrelid::regclass::text, k.conname, pg_get_constraintdef(k.oid),
               EXISTS (SELECT 1 FROM pg_constraint f WHERE f.contype = 'f' AND f.conindid = k.conindid)
        FROM pg_constraint k WHERE k.contype IN ('p', 'u') AND k.conrelid = ANY(%s::regclass[])
        ORDER BY k.conname
        """,
        [list(tables)],
    )
    keys = [
        (table, name, definition)
        for table, name, definition, is_referenced in cursor.fetchall()
        if definition not in _KEPT and (referenced or not is_referenced)
    ]
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = ANY(%s::regclass[])
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c
                          WHERE c.conindid = i.indexrelid AND c.contype IN ('p', 'u', 'x'))
        ORDER BY 1
        """,
        [list(tables)],
    )
    indexes = cursor.fetchall()
    # The checks still pending in this transaction (deferred foreign keys of rows written before
    # the generator, in a test) run now: PostgreSQL alters no table with pending trigger events.
    # Every deferrable constraint of the schema is initially deferred: `_indexes_restore` sets
    # them back so.
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
    restore = []
    for table, name, _definition in foreign:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
    for table, name, definition in keys:
        cursor.execute(f'ALTER TABLE {table} DROP CONSTRAINT "{name}"')
        restore.append(f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}')
    for name, definition in indexes:
        cursor.execute(f"DROP INDEX {name}")
        restore.append(definition)
    restore.extend(
        f'ALTER TABLE {table} ADD CONSTRAINT "{name}" {definition}' for table, name, definition in foreign
    )
    return restore


def _indexes_restore(cursor: Any, statements: list[str]) -> None:
    if statements:
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
    for statement in statements:
        cursor.execute(statement)
    if statements:
        cursor.execute("SET LOCAL maintenance_work_mem = DEFAULT")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


if __name__ == "__main__":
    sys.exit(main())
