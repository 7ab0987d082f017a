"""Ledger verification alone: wall time and CPU per event, this process and PostgreSQL.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/cum_bench_verify_1m \
      [PYTHONPATH=<checkout>] .venv/bin/python bench/verify.py --jobs 2 --runs 3

Runs `consent.selectors.ledger_verify(jobs=)` (what `manage.py verify_ledger --jobs` runs) on
a ledger already filled (e.g. by `bench/generate.py`), `--runs` times, and prints per run the
wall time, events/s, the CPU of this process (all its threads, `resource.getrusage`) and the
CPU of every PostgreSQL backend connected to this database (the verifier's own connection and
the scanning connections, which come and go) and of their parallel workers: a thread polls
`/proc` every 5 ms for the processes whose command line names the database (or a parallel
worker of one of them) and keeps each one's last reading, so a backend's last few
milliseconds before it exits may be missed. Nothing else may use the
database meanwhile (its backends would be counted). The code timed is the one first on
`PYTHONPATH` (another checkout's, to compare on the same database); this file only measures.
"""

from __future__ import annotations

import argparse
import inspect
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any


def _backends_cpu(database: str) -> dict[int, float]:
    """CPU seconds (user + system) of the PostgreSQL processes serving `database`."""
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[int, float] = {}
    needle = f" {database} ".encode()
    helpers: dict[int, tuple[int, float]] = {}  # parallel workers: pid -> (leader, CPU)
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/cmdline", "rb") as handle:
                command = handle.read()
            if not command.startswith(b"postgres: "):
                continue
            leader = command.partition(b"parallel worker for PID ")[2].split(b" ")[0].strip(b"\x00")
            if needle not in command and not leader:
                continue
            with open(f"/proc/{entry.name}/stat", "rb") as handle:
                fields = handle.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        spent = (int(fields[11]) + int(fields[12])) / tick
        if leader:
            helpers[int(entry.name)] = (int(leader), spent)
        else:
            found[int(entry.name)] = spent
    for pid, (leader, spent) in helpers.items():  # counted when their leader serves the database
        if leader in found:
            found[pid] = spent
    return found


class _BackendMeter:
    """Polls the database's backends; `spent()` is the CPU they used since the start."""

    def __init__(self, database: str) -> None:
        self.database = database
        self.start = _backends_cpu(database)
        self.last = dict(self.start)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.stop.wait(0.005):
            self.last.update(_backends_cpu(self.database))

    def spent(self) -> float:
        self.stop.set()
        self.thread.join()
        self.last.update(_backends_cpu(self.database))
        return sum(value - self.start.get(pid, 0.0) for pid, value in self.last.items())


def _cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--label", default="")
    args = parser.parse_args()
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    os.environ["DEBUG"] = "false"
    if not os.environ.get("PYTHONPATH"):
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    import django  # noqa: PLC0415 - after the path is set

    django.setup()
    from django.db import connection  # noqa: PLC0415 - after django.setup()

    from consent.selectors import ledger_verify  # noqa: PLC0415 - after django.setup()

    if connection.vendor != "postgresql":
        print("PostgreSQL only (the backends' CPU is read from /proc)")
        return 2
    database = connection.settings_dict["NAME"]
    kwargs: dict[str, Any] = (
        {"jobs": args.jobs} if "jobs" in inspect.signature(ledger_verify).parameters else {}
    )
    connection.ensure_connection()
    for run in range(args.runs):
        load = os.getloadavg()[0]
        meter = _BackendMeter(database)
        cpu, started = _cpu(), time.perf_counter()
        result = ledger_verify(**kwargs)
        wall, cpu = time.perf_counter() - started, _cpu() - cpu
        backends = meter.spent()
        size = max(1, result.size)
        print(
            f"{time.strftime('%H:%M:%S', time.gmtime())} {args.label} run {run + 1} jobs {args.jobs} "
            f"load {load:.1f}: ok={result.ok} {result.size} events in {wall:.2f} s "
            f"({result.size / wall:,.0f} events/s); CPU client {cpu:.2f} s + PostgreSQL {backends:.2f} s "
            f"= {1e6 * cpu / size:.2f} + {1e6 * backends / size:.2f} "
            f"= {1e6 * (cpu + backends) / size:.2f} us/event",
            flush=True,
        )
        if not result.ok:
            print(result.problems[:3])
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
