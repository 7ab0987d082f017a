"""Consent ledger benchmark: append N events, then verify the whole log.

    .venv/bin/python bench/ledger.py --events 100000
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cum_bench .venv/bin/python bench/ledger.py --events 100000

Without DATABASE_URL it uses a throwaway SQLite file in a temporary directory (deleted at
the end unless --keep). With DATABASE_URL it migrates that database and appends to it:
give it a database of its own (the ledger is append-only, the rows cannot be removed
afterwards; drop the database instead). It refuses a database whose ledger is not empty
unless --allow-existing.

Each append is a real `consent.services.consent_record` call in its own transaction
(shared lock on the ledger head, the subject's lock, leaf hash, current-state upsert, the
leaf-index counter taken last), one resident among --subjects, alternating purposes and
decisions, with encrypted details on one event in --details-every (`--batch K`: K purposes of
one resident per call, `consent_record_many`, one transaction and one ledger write; details on
the events of one call in --details-every). `--writers N` appends
from N processes at once (forked after set-up, started together on a barrier, each with its
own database connection; residents split between them). Then:
- integrate: the sequencer puts every pending event into the Merkle tree
  (`tree_head_sign`: batches of 5,000, one head update and one signed tree head each);
- verify: `consent.selectors.ledger_verify` (recompute every leaf and the tree, check the
  signed tree heads), as `manage.py verify_ledger` does (`--verify-jobs` processes, 2 by
  default, as its `--jobs`);
- gate: `consent_is_granted` lookups, then the batched form `consent_granted_many` (every
  purpose of one resident per call) where the checked-out code has it; proofs: inclusion
  proofs from stored hashes. `--readers N` times them again from N processes at once (what
  the machine serves: wall time, CPU of the processes and of their backends).
Prints events/s for append and verify, lookups/s and proofs/s, each with the CPU per
operation of this process and of its PostgreSQL backend (read from /proc: the server runs on
this host), steadier than the rates on a shared machine. The test suite asserts
correctness; this only measures.

To time the reads again on a ledger already filled (e.g. before and after a change, back to
back): `--events 0 --allow-existing` appends nothing, signs a tree head and times the
verification, the gate (residents of earlier runs) and the proofs (leaves of the whole log).
"""

from __future__ import annotations

import argparse
import functools
import inspect
import multiprocessing
import os
import platform
import random
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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
    parser.add_argument("--writers", type=int, default=1, help="appending processes (PostgreSQL)")
    parser.add_argument(
        "--batch",
        type=int,
        default=1,
        choices=(1, 2, 3, 4),
        help="decisions per call: K > 1 records K purposes of one resident at once "
        "(consent_record_many, one transaction); --events must be a multiple of K",
    )
    parser.add_argument(
        "--readers",
        type=int,
        default=0,
        help="also time the gate and the proofs from N processes at once (PostgreSQL; 0: not)",
    )
    parser.add_argument(
        "--verify-jobs",
        type=int,
        default=2,
        help="processes scanning the log for the verification (PostgreSQL; verify_ledger --jobs)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary SQLite file")
    parser.add_argument("--allow-existing", action="store_true", help="append to a non-empty ledger")
    parser.add_argument(
        "--async-commit",
        action="store_true",
        help="PostgreSQL: SET synchronous_commit = off for this session (shows what the commit fsync costs)",
    )
    args = parser.parse_args()
    if args.events % args.batch:
        parser.error("--events must be a multiple of --batch")

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
    call_command("createcachetable", verbosity=0)  # the database cache (rate limits, key versions)
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

    def append_share(writer: int, writers: int) -> None:
        """Events writer, writer + writers, ... for residents of this writer's share only."""
        mine = residents[writer::writers] or residents
        share_rng = random.Random(42 + writer)
        for done, i in enumerate(range(writer, args.events, writers), start=1):
            consent_record(
                user=mine[share_rng.randrange(len(mine))],
                purpose_code=purposes[i % len(purposes)],
                event_type=decisions[(i // len(purposes)) % len(decisions)],
                collection_method="web_form",
                details={"evidence": f"bench {i}"}
                if args.details_every and i % args.details_every == 0
                else None,
            )
            if writers == 1 and done % 10_000 == 0:
                elapsed = time.perf_counter() - started
                print(f"  appended {done}: {done / elapsed:,.0f} events/s", file=sys.stderr)

    append_share = _batched(append_share, args, residents)  # --batch K: consent_record_many
    db_cpu = multiprocessing.get_context("fork").Value("d", 0.0)
    cpu_before = _cpu_seconds()
    if args.writers > 1 and args.events:
        append_seconds = run_writers(args.writers, append_share, db_cpu)
    else:
        backend_before = _backend_cpu_seconds()
        started = time.perf_counter()
        append_share(0, 1)
        append_seconds = time.perf_counter() - started
        db_cpu.value = _backend_cpu_seconds() - backend_before
    append_cpu = _cpu_seconds() - cpu_before
    append_db_cpu = db_cpu.value if vendor == "postgresql" else None
    load = os.getloadavg()[0]

    started = time.perf_counter()
    head = tree_head_sign()  # the sequencer: every pending event into the tree, in batches
    integrate_seconds = time.perf_counter() - started

    started, cpu_before, backend_before = time.perf_counter(), _cpu_seconds(), _backend_cpu_seconds()
    # An older checkout's ledger_verify (timed with it first on PYTHONPATH) has no `jobs`.
    jobs = {"jobs": args.verify_jobs} if "jobs" in inspect.signature(ledger_verify).parameters else {}
    result = ledger_verify(
        progress=lambda done, total: print(f"  verified {done}/{total}", file=sys.stderr),
        progress_every=25_000,
        **jobs,
    )
    verify_seconds = time.perf_counter() - started
    verify_cpu = (_cpu_seconds() - cpu_before, _backend_cpu_seconds() - backend_before)
    if not result.ok:
        print(f"VERIFY FAILED: {result.first_problem}")
        return 1

    started, cpu_before, backend_before = time.perf_counter(), _cpu_seconds(), _backend_cpu_seconds()
    for i in range(args.lookups):
        consent_is_granted(user=residents[i % len(residents)], purpose_code=purposes[i % len(purposes)])
    lookup_seconds = time.perf_counter() - started
    lookup_cpu = (_cpu_seconds() - cpu_before, _backend_cpu_seconds() - backend_before)

    batched = _time_batched_gate(args.lookups, residents, purposes)

    leaves = dict(
        LedgerEvent.objects.filter(seq__gte=first_seq)
        .values_list("seq", "leaf_hash")
        .order_by("seq")[: args.proofs]
    )
    indexes = [rng.randrange(first_seq, head.tree_size) for _ in range(args.proofs)]
    started, cpu_before, backend_before = time.perf_counter(), _cpu_seconds(), _backend_cpu_seconds()
    for index in indexes:
        path = inclusion_proof(leaf_index=index, tree_size=head.tree_size)
        if index in leaves:
            assert merkle.verify_inclusion(
                bytes(leaves[index]), index, head.tree_size, path, bytes(head.root_hash)
            )
    proof_seconds = time.perf_counter() - started
    proof_cpu = (_cpu_seconds() - cpu_before, _backend_cpu_seconds() - backend_before)

    concurrent = _time_readers(args, residents, purposes, indexes, head.tree_size)

    def line(label: str, count: int, unit: str, seconds: float, rate_unit: str) -> str:
        return f"{label:<7}: {count:>9,} {unit:<7} in {seconds:8.1f} s = {count / seconds:>9,.0f} {rate_unit}"

    print(
        line("append", args.events, "events", append_seconds, "events/s"),
        f"({_writers_text(args)}; client CPU {append_cpu:.1f} s"
        + (f" = {1000 * append_cpu / args.events:.2f} ms/event" if args.events else "")
        + (f", its PostgreSQL backends {append_db_cpu:.1f} s" if append_db_cpu is not None else "")
        + (
            f" = {1000 * append_db_cpu / args.events:.2f} ms/event"
            if append_db_cpu is not None and args.events
            else ""
        )
        + f"; load average {load:.1f})",
    )
    print(line("integr.", args.events, "events", max(integrate_seconds, 1e-9), "events/s"), "(sequencer)")

    def cpu(spent: tuple[float, float], count: int, unit: str) -> str:
        return _cpu_text(spent, count, unit, vendor)

    print(
        line("verify", result.size, "events", verify_seconds, "events/s"),
        f"({result.tree_heads_checked} STH; {cpu(verify_cpu, result.size, 'us/event')})",
    )
    print(
        line("gate", args.lookups, "lookups", lookup_seconds, "lookups/s"),
        f"({cpu(lookup_cpu, args.lookups, 'us/lookup')})",
    )
    if batched is not None:
        count, seconds, spent = batched
        print(
            line("gate xN", count, "lookups", seconds, "lookups/s"),
            f"({len(purposes)} purposes per call; {cpu(spent, count, 'us/lookup')})",
        )
    print(
        line("proofs", args.proofs, "proofs", proof_seconds, "proofs/s"),
        f"({cpu(proof_cpu, args.proofs, 'us/proof')}; load average {os.getloadavg()[0]:.1f})",
    )
    print(
        *[
            line(label, count, unit, seconds, f"{unit}/s")
            + f" ({args.readers} processes at once; {cpu(spent, count, 'us/' + unit.rstrip('s'))})"
            for label, count, unit, seconds, spent in concurrent
        ],
        sep="\n",
        end="\n" if concurrent else "",
    )
    print(f"root   : {result.root_hash} (size {result.size})")
    return 0


_PURPOSES = [
    "personalisation-declared",
    "personalisation-browsing",
    "service-news-email",
    "audience-measurement",
]
_DECISIONS = ["given", "refused", "given", "withdrawn"]


def _writers_text(args: argparse.Namespace) -> str:
    text = f"{args.writers} writer{'s' if args.writers > 1 else ''}"
    return text + (f", {args.batch} decisions per call" if args.batch > 1 else "")


def _batched(append_share: Any, args: argparse.Namespace, residents: list[Any]) -> Any:
    """`append_share` itself, or with --batch K > 1 its form recording K decisions per call."""
    if args.batch == 1:
        return append_share
    return functools.partial(_append_share_batches, args, residents)


def _append_share_batches(args: argparse.Namespace, residents: list[Any], writer: int, writers: int) -> None:
    """--batch K: calls writer, writer + writers, ... for residents of this writer's share only;
    each call c records events c*K .. c*K+K-1 (the purposes and decisions that
    events of these numbers get one by one) for one resident, in one consent_record_many;
    encrypted details on the events of one call in --details-every."""
    from consent.services import consent_record_many  # noqa: PLC0415 - after django.setup()

    mine = residents[writer::writers] or residents
    share_rng = random.Random(42 + writer)
    k = args.batch
    for call in range(writer, args.events // k, writers):
        numbers = range(call * k, call * k + k)
        consent_record_many(
            user=mine[share_rng.randrange(len(mine))],
            decisions=[
                (_PURPOSES[i % len(_PURPOSES)], _DECISIONS[(i // len(_PURPOSES)) % len(_DECISIONS)])
                for i in numbers
            ],
            collection_method="web_form",
            details={"evidence": f"bench {call}"}
            if args.details_every and call % args.details_every == 0
            else None,
        )


def _cpu_text(spent: tuple[float, float], count: int, unit: str, vendor: str) -> str:
    """CPU per operation in microseconds: this process (all its threads) and its own PostgreSQL
    backend (the verification's worker connections, other backends, are not counted in it)."""
    own, backend = spent
    text = f"client CPU {1e6 * own / max(count, 1):.2f} {unit}"
    if vendor == "postgresql":
        text += f", its PostgreSQL backend {1e6 * backend / max(count, 1):.2f} {unit}"
    return text


def _time_batched_gate(
    lookups: int, residents: list[Any], purposes: list[str]
) -> tuple[int, float, tuple[float, float]] | None:
    """The batched gate (every purpose of one resident per call: a claims release, a profile
    page), where the checked-out code has it: (lookups, seconds, CPU of this process and of its
    PostgreSQL backend)."""
    from consent import gate  # noqa: PLC0415 - after django.setup()

    many = getattr(gate, "consent_granted_many", None)
    if many is None or not lookups:
        return None
    calls = max(1, lookups // len(purposes))
    started, cpu_before, backend_before = time.perf_counter(), _cpu_seconds(), _backend_cpu_seconds()
    for i in range(calls):
        many(user=residents[i % len(residents)], purpose_codes=purposes)
    return (
        calls * len(purposes),
        time.perf_counter() - started,
        (_cpu_seconds() - cpu_before, _backend_cpu_seconds() - backend_before),
    )


def _time_readers(
    args: argparse.Namespace, residents: list[Any], purposes: list[str], indexes: list[int], size: int
) -> list[tuple[str, int, str, float, tuple[float, float]]]:
    """The gate, the batched gate and the proofs from `--readers` processes at once (each its
    own connection and PostgreSQL backend, the operations split between them): what the
    machine serves, wall time, with the CPU of the processes and of their backends."""
    from consent import gate  # noqa: PLC0415 - after django.setup()
    from consent.selectors import consent_is_granted, inclusion_proof  # noqa: PLC0415 - after django.setup()

    many = getattr(gate, "consent_granted_many", None)
    if not args.readers or connection.vendor != "postgresql":
        return []

    def lookups(reader: int, readers: int) -> None:
        for i in range(reader, args.lookups, readers):
            consent_is_granted(user=residents[i % len(residents)], purpose_code=purposes[i % len(purposes)])

    def batched(reader: int, readers: int) -> None:
        for i in range(reader, max(1, args.lookups // len(purposes)), readers):
            many(user=residents[i % len(residents)], purpose_codes=purposes)

    def proofs(reader: int, readers: int) -> None:
        for index in indexes[reader::readers]:
            inclusion_proof(leaf_index=index, tree_size=size)

    timed = []
    for label, work, count, unit in (
        ("gate ||", lookups, args.lookups, "lookups"),
        ("gateN ||", batched, max(1, args.lookups // len(purposes)) * len(purposes), "lookups"),
        ("proofs||", proofs, len(indexes), "proofs"),
    ):
        if work is batched and many is None:
            continue
        db_cpu = multiprocessing.get_context("fork").Value("d", 0.0)
        cpu_before = _cpu_seconds()
        seconds = run_writers(args.readers, work, db_cpu)
        timed.append((label, count, unit, seconds, (_cpu_seconds() - cpu_before, db_cpu.value)))
    return timed


def run_writers(writers: int, append_share: Any, db_cpu: Any) -> float:
    """Fork `writers` processes (after closing the parent's connection: each opens its own),
    release them together on a barrier once all are set up; the seconds until the last ends."""
    from django.db import connections  # noqa: PLC0415 - after django.setup()

    connections.close_all()
    context = multiprocessing.get_context("fork")
    barrier = context.Barrier(writers + 1)

    def child(writer: int) -> None:
        backend_before = _backend_cpu_seconds()  # connects: set-up done before the barrier
        barrier.wait()
        append_share(writer, writers)
        spent = _backend_cpu_seconds() - backend_before
        with db_cpu.get_lock():
            db_cpu.value += spent
        connections.close_all()

    processes = [context.Process(target=child, args=(w,)) for w in range(writers)]
    for process in processes:
        process.start()
    barrier.wait()
    started = time.perf_counter()
    for process in processes:
        process.join()
    seconds = time.perf_counter() - started
    failed = [process.exitcode for process in processes if process.exitcode]
    if failed:
        raise SystemExit(f"a writer failed (exit codes {failed})")
    return seconds


def _cpu_seconds() -> float:
    """CPU (user + system) of this process and of its ended children (the forked writers)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _backend_cpu_seconds() -> float:
    """CPU (user + system) of this connection's PostgreSQL backend so far, read from /proc (the
    server runs on this host); 0 on SQLite or when it cannot be read."""
    if connection.vendor != "postgresql":
        return 0.0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        pid = cursor.fetchone()[0]
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


if __name__ == "__main__":
    sys.exit(main())
