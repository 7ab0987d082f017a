"""Consent ledger benchmark: append N events, then verify the whole log.

    .venv/bin/python bench/ledger.py --events 100000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cum_bench .venv/bin/python bench/ledger.py --events 100000

Without DATABASE_URL it uses a throwaway SQLite file in a temporary directory (deleted at
the end unless --keep). With DATABASE_URL it migrates that database and appends to it:
give it a database of its own (the ledger is append-only, the rows cannot be removed
afterwards; drop the database instead). It refuses a database whose ledger is not empty
unless --allow-existing.

Each append is a real `consent.services.consent_record` call in its own transaction
(row lock on the ledger head, leaf hash, O(log n) Merkle update, current-state upsert),
one resident among --subjects, alternating purposes and decisions, with encrypted
details on one event in --details-every. Then:
- verify: `consent.selectors.ledger_verify` (recompute every leaf and the tree, check the
  signed tree heads), as `manage.py verify_ledger` does;
- gate: `consent_is_granted` lookups; proofs: inclusion proofs from stored hashes.
Prints events/s for append and verify, lookups/s and proofs/s. The test suite asserts
correctness; this only measures.

To time the reads again on a ledger already filled (e.g. before and after a change, back to
back): `--events 0 --allow-existing` appends nothing, signs a tree head and times the
verification, the gate (residents of earlier runs) and the proofs (leaves of the whole log).
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

import django
from django.core.management import call_command
from django.db import connection

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from consent import merkle


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=100_000)
    parser.add_argument("--subjects", type=int, default=2_000, help="distinct residents")
    parser.add_argument("--details-every", type=int, default=10, help="encrypted details on 1 event in N")
    parser.add_argument("--lookups", type=int, default=20_000, help="gate lookups to time")
    parser.add_argument("--proofs", type=int, default=2_000, help="inclusion proofs to time")
    parser.add_argument("--keep", action="store_true", help="keep the temporary SQLite file")
    parser.add_argument("--allow-existing", action="store_true", help="append to a non-empty ledger")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="PostgreSQL: SET synchronous_commit = off for this session (shows what the commit fsync costs)",
    )
    args = parser.parse_args()

    tmpdir = None
    if not os.environ.get("DATABASE_URL"):
        tmpdir = tempfile.mkdtemp(prefix="cum-bench-ledger-")
        os.environ["DATABASE_URL"] = f"sqlite:///{tmpdir}/bench.sqlite3"
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DEBUG"] = "false"  # no query log growing in memory
    try:
        return run(args)
    finally:
        if tmpdir and not args.keep:
            shutil.rmtree(tmpdir, ignore_errors=True)
        elif tmpdir:
            print(f"kept {tmpdir}/bench.sqlite3", file=sys.stderr)


def run(args: argparse.Namespace) -> int:
    django.setup()
    # Models can be imported only after django.setup(), which must follow main()'s choice of
    # DATABASE_URL: these imports stay here.
    from consent.models import LedgerEvent  # noqa: PLC0415 - after django.setup()
    from consent.selectors import (  # noqa: PLC0415 - after django.setup()
        consent_is_granted,
        inclusion_proof,
        ledger_verify,
    )
    from consent.services import consent_record, tree_head_sign  # noqa: PLC0415 - after django.setup()
    from identity.keys import signing_keys_ensure  # noqa: PLC0415 - after django.setup()
    from identity.models import User  # noqa: PLC0415 - after django.setup()

    call_command("migrate", verbosity=0)
    if LedgerEvent.objects.exists() and not args.allow_existing:
        print("the ledger of this database is not empty (use a throwaway database or --allow-existing)")
        return 2
    signing_keys_ensure()
    vendor = connection.vendor
    if args.async_commit and vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET synchronous_commit = off")
        print("synchronous_commit = off (this session only)")
    print(f"database: {vendor} {connection.Database.sqlite_version if vendor == 'sqlite' else ''}".rstrip())
    print(f"python {platform.python_version()} on {platform.machine()}, {os.cpu_count()} CPUs")

    if args.events:
        run_id = os.urandom(4).hex()
        User.objects.bulk_create(
            [User(email=f"bench-{run_id}-{i}@example.org", password="!") for i in range(args.subjects)],
            batch_size=1000,
        )
        residents = list(User.objects.filter(email__startswith=f"bench-{run_id}-"))
    else:  # reads only: the residents of earlier runs, who have decisions in the ledger
        residents = list(User.objects.filter(email__startswith="bench-").order_by("pk")[: args.subjects])
    purposes = [
        "personalisation-declared",
        "personalisation-browsing",
        "service-news-email",
        "audience-measurement",
    ]
    decisions = ["given", "refused", "given", "withdrawn"]
    rng = random.Random(42)
    first_seq = LedgerEvent.objects.count() if args.events else 0

    started = time.perf_counter()
    for i in range(args.events):
        consent_record(
            user=residents[rng.randrange(len(residents))],
            purpose_code=purposes[i % len(purposes)],
            event_type=decisions[(i // len(purposes)) % len(decisions)],
            collection_method="web_form",
            details={"evidence": f"bench {i}"}
            if args.details_every and i % args.details_every == 0
            else None,
        )
        if (i + 1) % 10_000 == 0:
            elapsed = time.perf_counter() - started
            print(f"  appended {i + 1}: {(i + 1) / elapsed:,.0f} events/s", file=sys.stderr)
    append_seconds = time.perf_counter() - started
    head = tree_head_sign()

    started = time.perf_counter()
    result = ledger_verify(
        progress=lambda done, total: print(f"  verified {done}/{total}", file=sys.stderr),
        progress_every=25_000,
    )
    verify_seconds = time.perf_counter() - started
    if not result.ok:
        print(f"VERIFY FAILED: {result.first_problem}")
        return 1

    started = time.perf_counter()
    for i in range(args.lookups):
        consent_is_granted(user=residents[i % len(residents)], purpose_code=purposes[i % len(purposes)])
    lookup_seconds = time.perf_counter() - started

    leaves = dict(
        LedgerEvent.objects.filter(seq__gte=first_seq)
        .values_list("seq", "leaf_hash")
        .order_by("seq")[: args.proofs]
    )
    indexes = [rng.randrange(first_seq, head.tree_size) for _ in range(args.proofs)]
    started = time.perf_counter()
    for index in indexes:
        path = inclusion_proof(leaf_index=index, tree_size=head.tree_size)
        if index in leaves:
            assert merkle.verify_inclusion(
                bytes(leaves[index]), index, head.tree_size, path, bytes(head.root_hash)
            )
    proof_seconds = time.perf_counter() - started

    def line(label: str, count: int, unit: str, seconds: float, rate_unit: str) -> str:
        return f"{label:<7}: {count:>9,} {unit:<7} in {seconds:8.1f} s = {count / seconds:>9,.0f} {rate_unit}"

    print(line("append", args.events, "events", append_seconds, "events/s"))
    print(
        line("verify", result.size, "events", verify_seconds, "events/s"),
        f"({result.tree_heads_checked} STH)",
    )
    print(line("gate", args.lookups, "lookups", lookup_seconds, "lookups/s"))
    print(line("proofs", args.proofs, "proofs", proof_seconds, "proofs/s"))
    print(f"root   : {result.root_hash} (size {result.size})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
