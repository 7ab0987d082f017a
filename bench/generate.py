"""Fill a throwaway PostgreSQL database with residents and a large consent ledger, with COPY.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cum_bench_scale \
        .venv/bin/python bench/generate.py --residents 1000000 --events 10000000

Refuses to run unless the database is PostgreSQL and its name contains `bench`, and never
under production settings (`DJANGO_ENV=production`). Migrate the database first
(`manage.py migrate`); the rows are added to what is there (run it twice, get twice as many).

What it writes, per resident (the columns the application itself writes, through COPY):
- an account (`identity_user`, an Argon2id hash of a random password nobody knows);
- one browser session (`identity_browsersession`, live);
- one access token and its refresh token (`identity_accesstoken`, `identity_refreshtoken`) for
  a partner client named `bench-generated` (created if absent): the token columns hold a
  random string and its SHA-256, as the real rows do (a real access token is a signed JWT of
  ~800 bytes; these are 64 characters, so the table is smaller than in production);
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

Speed: rows are formatted in Python and streamed with psycopg's `cursor.copy`, one COPY per
table; while the ledger is loaded, its secondary indexes are dropped and rebuilt afterwards
(CREATE INDEX sorts once instead of maintaining six B-trees row by row) and the foreign-key
triggers are off for this session (`session_replication_role = replica`, which needs a
superuser; the rows are consistent by construction). `ANALYZE` runs at the end.
`generate()` is the entry point the tests call on their own throwaway test database.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import secrets
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BENCH_CLIENT_ID = "bench-generated"
# Rows per chunk written to COPY (bounded memory; each chunk is one write).
_CHUNK = 20_000
_LEDGER_TABLES = ("consent_ledgerevent", "consent_merklenode")


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--residents", type=int, default=1_000)
    parser.add_argument("--events", type=int, default=10_000)
    parser.add_argument("--seed", default="", help="makes event ids reproducible (default: random)")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.db import connection  # noqa: PLC0415 - after django.setup()

    problem = target_problem(connection)
    if problem:
        print(f"refusing to run: {problem}", file=sys.stderr)
        return 2
    started = time.monotonic()
    figures = generate(residents=args.residents, events=args.events, seed=args.seed, progress=_print)
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


def _event_id(seed: bytes, seq: int) -> uuid.UUID:
    """A version-4-shaped UUID derived from (seed, seq): random-looking as uuid4() is, and
    computable again from the position alone (the current states name their event)."""
    return uuid.UUID(
        bytes=hashlib.blake2b(seq.to_bytes(8, "big"), key=seed, digest_size=16).digest(), version=4
    )


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


def generate(  # noqa: C901 - one COPY after another, in order, in one transaction
    *, residents: int, events: int, seed: str = "", progress: Callable[[str], None] = lambda _m: None
) -> dict[str, Any]:
    """Add `residents` residents (session, tokens, consent subject) and `events` ledger events.

    Returns figures (rows and seconds per phase). Call inside a configured Django process on
    PostgreSQL; the CLI checks the target first (`target_problem`).
    """
    from django.contrib.auth.hashers import make_password  # noqa: PLC0415 - after django.setup()
    from django.db import connection, transaction  # noqa: PLC0415

    from consent import crypto, ledger, merkle  # noqa: PLC0415
    from consent.models import Purpose  # noqa: PLC0415
    from consent.services import current_notice  # noqa: PLC0415
    from identity.keys import signing_keys_ensure  # noqa: PLC0415

    if residents < 1 or events < 0:
        raise ValueError("at least one resident, and a non-negative number of events")
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

    with transaction.atomic(), connection.cursor() as django_cursor:
        cursor = django_cursor.cursor  # psycopg's own cursor, for copy()
        cursor.execute("SET LOCAL session_replication_role = replica")
        cursor.execute("SET LOCAL synchronous_commit = off")

        # --- residents, sessions, tokens, subjects --------------------------------------
        t = time.monotonic()
        user_ids = [uuid.uuid4() for _ in range(residents)]
        subject_ids = [uuid.uuid4() for _ in range(residents)]
        created = now - timedelta(days=400)

        def users() -> Iterator[tuple[Any, ...]]:
            for i, user_id in enumerate(user_ids):
                yield (
                    user_id,
                    password,
                    None,
                    False,
                    f"bench-{run}-{i}@bench.example",
                    True,
                    f"Prénom{i}",
                    f"Nom{i}",
                    "fr",
                    True,
                    False,
                    created,
                    created,
                    "France",
                    "Nantes",
                    "",
                    False,
                    "44000",
                    "Pays de la Loire",
                    f"{i} rue du Banc",
                )

        figures["users"] = _copy(
            cursor,
            "identity_user",
            (
                "id",
                "password",
                "last_login",
                "is_superuser",
                "email",
                "email_verified",
                "given_name",
                "family_name",
                "preferred_language",
                "is_active",
                "is_staff",
                "created_at",
                "updated_at",
                "country",
                "locality",
                "phone_number",
                "phone_number_verified",
                "postal_code",
                "region",
                "street_address",
            ),
            users(),
        )
        progress(f"{residents} residents")

        session_start = _next_id(cursor, "identity_browsersession")
        sids = [secrets.token_urlsafe(32) for _ in range(residents)]
        signed_in = now - timedelta(minutes=30)
        figures["sessions"] = _copy(
            cursor,
            "identity_browsersession",
            (
                "id",
                "sid",
                "created_at",
                "auth_time",
                "amr",
                "acr",
                "user_agent",
                "device",
                "last_seen_at",
                "ended_at",
                "end_reason",
                "session_key_encrypted",
                "user_id",
            ),
            (
                (
                    session_start + i,
                    sids[i],
                    signed_in,
                    signed_in,
                    '["pwd"]',
                    "",
                    "bench",
                    "",
                    signed_in,
                    None,
                    "",
                    None,
                    user_id,
                )
                for i, user_id in enumerate(user_ids)
            ),
        )
        _sync_identity(cursor, "identity_browsersession")
        progress("sessions")

        access_start = _next_id(cursor, "identity_accesstoken")
        refresh_start = _next_id(cursor, "identity_refreshtoken")
        expires = now + timedelta(hours=1)

        def token(kind: str, i: int) -> tuple[str, str]:
            value = f"{kind}-{run}-{i}-{secrets.token_hex(16)}"
            return value, hashlib.sha256(value.encode()).hexdigest()

        def access_tokens() -> Iterator[tuple[Any, ...]]:
            for i, user_id in enumerate(user_ids):
                value, digest = token("at", i)
                yield (
                    access_start + i,
                    value,
                    digest,
                    expires,
                    "openid profile email",
                    "[]",
                    signed_in,
                    signed_in,
                    client.pk,
                    None,
                    None,
                    user_id,
                    sids[i],
                    None,
                )

        figures["access_tokens"] = _copy(
            cursor,
            "identity_accesstoken",
            (
                "id",
                "token",
                "token_checksum",
                "expires",
                "scope",
                "resource",
                "created",
                "updated",
                "application_id",
                "id_token_id",
                "source_refresh_token_id",
                "user_id",
                "sid",
                "claims_request",
            ),
            access_tokens(),
        )
        _sync_identity(cursor, "identity_accesstoken")

        def refresh_tokens() -> Iterator[tuple[Any, ...]]:
            for i, user_id in enumerate(user_ids):
                value, digest = token("rt", i)
                yield (
                    refresh_start + i,
                    value,
                    digest,
                    uuid.uuid4(),
                    "[]",
                    signed_in,
                    signed_in,
                    None,
                    signed_in,
                    access_start + i,
                    client.pk,
                    user_id,
                    sids[i],
                    "",
                    '["pwd"]',
                    None,
                    "",  # dpop_jkt: not bound to a DPoP key
                )

        figures["refresh_tokens"] = _copy(
            cursor,
            "identity_refreshtoken",
            (
                "id",
                "token",
                "token_checksum",
                "token_family",
                "resource",
                "created",
                "updated",
                "revoked",
                "auth_time",
                "access_token_id",
                "application_id",
                "user_id",
                "sid",
                "acr",
                "amr",
                "claims_request",
                "dpop_jkt",
            ),
            refresh_tokens(),
        )
        _sync_identity(cursor, "identity_refreshtoken")
        progress("tokens")

        figures["subjects"] = _copy(
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
                    user_ids[i],
                    "",
                )
                for i, subject_id in enumerate(subject_ids)
            ),
        )
        figures["accounts_s"] = round(time.monotonic() - t, 1)
        progress(f"subjects ({figures['accounts_s']} s for the accounts)")

        # --- the ledger -------------------------------------------------------------------
        t = time.monotonic()
        ledger.integrate_all()  # events appended but not yet in the tree come first
        head = ledger.lock_head()
        start, frontier = ledger.head_check(head)
        dropped = _drop_secondary_indexes(cursor) if events >= 100_000 else []
        year = timedelta(days=365).total_seconds()
        step = year / max(events, 1)
        first_time = now - timedelta(days=365)
        count = len(purposes)

        def event_of(n: int) -> tuple[int, int, int, str, datetime, datetime | None]:
            """(seq, resident, purpose slot, type, occurred_at, valid_until) of event n."""
            r, j = n % residents, n // residents  # resident r's j-th event
            slot = j % count
            event_type = "given" if (j // count) % 2 == 0 else "withdrawn"
            occurred = first_time + timedelta(microseconds=int(n * step * 1_000_000))
            lifetime = purposes[slot].consent_lifetime_days
            valid_until = occurred + timedelta(days=lifetime) if event_type == "given" and lifetime else None
            return start + n, r, slot, event_type, occurred, valid_until

        entry_bytes, leaf_hash, frontier_append = ledger.entry_bytes, merkle.leaf_hash, merkle.frontier_append
        # The completed Merkle nodes wait in a temporary file (one COPY per table at a time).
        nodes = tempfile.TemporaryFile("w+", encoding="ascii")  # noqa: SIM115 - closed below, after its COPY

        def ledger_rows() -> Iterator[tuple[Any, ...]]:
            nonlocal frontier
            for n in range(events):
                seq, r, slot, event_type, occurred, valid_until = event_of(n)
                purpose = purposes[slot]
                notice = notices[purpose.id]
                row = {
                    "id": _event_id(seed_bytes, seq),
                    "seq": seq,
                    "event_type": event_type,
                    "subject_id": subject_ids[r],
                    "purpose_code": purpose.code,
                    "notice_id": notice.id if notice else None,
                    "notice_version": notice.version if notice else None,
                    "notice_sha256": notice.content_sha256 if notice else "",
                    "collection_method": "web_form",
                    "actor_type": "resident",
                    "actor_id": "",
                    "partner_client_id": "",
                    "occurred_at": occurred,
                    "valid_until": valid_until,
                    "linked_from": None,
                    "details_ciphertext": None,
                }
                leaf = leaf_hash(entry_bytes(row))
                frontier, completed = frontier_append(frontier, seq, leaf)
                for level, index, digest in completed:
                    nodes.write(f"{level}\t{index}\t\\\\x{digest.hex()}\n")
                yield (
                    row["id"],
                    seq,
                    event_type,
                    purpose.code,
                    row["notice_version"],
                    row["notice_sha256"],
                    "web_form",
                    "resident",
                    "",
                    "",
                    occurred,
                    valid_until,
                    None,
                    None,
                    leaf,
                    row["notice_id"],
                    purpose.id,
                    subject_ids[r],
                )

        figures["ledger_events"] = _copy(
            cursor,
            "consent_ledgerevent",
            (
                "id",
                "seq",
                "event_type",
                "purpose_code",
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
                "leaf_hash",
                "notice_id",
                "purpose_id",
                "subject_id",
            ),
            ledger_rows(),
        )
        progress(f"{events} ledger events ({round(time.monotonic() - t, 1)} s)")
        nodes.seek(0)
        with cursor.copy('COPY "consent_merklenode" ("level", "index", "hash") FROM STDIN') as copy:
            while chunk := nodes.read(1 << 20):
                copy.write(chunk)
        nodes.close()
        progress("Merkle nodes")

        def states() -> Iterator[tuple[Any, ...]]:
            # Resident r's events are n = r + j * R for j < k_r; its last on slot p is the
            # largest such j with j % count == p.
            for r in range(residents):
                k = (events - r + residents - 1) // residents
                for slot in range(min(k, count)):
                    j = slot + ((k - 1 - slot) // count) * count
                    seq, _r, _slot, event_type, _occurred, valid_until = event_of(r + j * residents)
                    yield (
                        event_type,
                        valid_until,
                        False,
                        now,
                        _event_id(seed_bytes, seq),
                        purposes[slot].id,
                        subject_ids[r],
                    )

        figures["consent_states"] = _copy(
            cursor,
            "consent_consentstate",
            (
                "status",
                "valid_until",
                "renewal_required",
                "updated_at",
                "event_id",
                "purpose_id",
                "subject_id",
            ),
            states(),
        )
        size = start + events
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
        _restore_indexes(cursor, dropped)
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
        signing_keys_ensure()
        ledger.tree_head_create()

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


def _drop_secondary_indexes(cursor: Any) -> list[str]:
    """Drop the ledger's indexes that back no constraint; return their definitions."""
    cursor.execute(
        """
        SELECT i.indexrelid::regclass::text, pg_get_indexdef(i.indexrelid)
        FROM pg_index i
        WHERE i.indrelid = 'consent_ledgerevent'::regclass
          AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid)
        """
    )
    definitions = []
    for name, definition in cursor.fetchall():
        cursor.execute(f"DROP INDEX {name}")
        definitions.append(definition)
    return definitions


def _restore_indexes(cursor: Any, definitions: list[str]) -> None:
    if definitions:
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
    for definition in definitions:
        cursor.execute(definition)


if __name__ == "__main__":
    sys.exit(main())
