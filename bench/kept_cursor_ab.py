"""In-process A/B of the token path's statements on the kept cursor (common/kept_cursor.py).

    .venv/bin/python bench/kept_cursor_ab.py [--rounds 8] [--requests 200] \
        [--database-url postgres://postgres@127.0.0.1:5432/cum_bench_kept_ab] [--redis-url ...]

Prepares a throwaway database as bench/oidc.py does (production settings), then drives
refreshes with rotation and authorization-code round trips (authorize → code → token)
through Django's WSGI handler in this process (django.test.Client, as bench/oidc_profile.py),
alternating, round after round, two ways of running the statements of identity/oidc/token_rows.py,
identity/oidc/token_writes.py and identity/sessions.py (session_client_record):

- "django": each statement on a Django cursor built for it (`with connection.cursor() as c:
  c.execute(...)`), as before the kept cursor;
- "kept": `common.kept_cursor.kept_fetch` / `kept_rowcount`, as shipped.

Same process, same database, same SQL: the difference is the cursor alone. CPU per request
is time.process_time (this process: Django, psycopg's client side; not PostgreSQL's).
Set DATABASE_PREPARED_STATEMENTS=true in the environment for the prepared variant.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import django
from django.db import DEFAULT_DB_ALIAS, connections

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import oidc as bench


def _django_fetch(
    sql: str, params: Any, *, all_rows: bool = False, db: Any = None, server_binding: bool = False
) -> Any:
    """A Django cursor per statement (binding as the backend's settings say: `server_binding`,
    which the token path passes to kept_fetch, is the kept cursor's and has no meaning here)."""
    db = db if db is not None else connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if all_rows else cursor.fetchone()


def _django_rowcount(sql: str, params: Any, *, db: Any = None, server_binding: bool = False) -> int:
    db = db if db is not None else connections[DEFAULT_DB_ALIAS]
    with db.cursor() as cursor:
        cursor.execute(sql, params)
        return int(cursor.rowcount)


def _use(mode: str) -> None:
    from common import kept_cursor  # noqa: PLC0415 - after django.setup()
    from identity import sessions  # noqa: PLC0415
    from identity.oidc import token_rows, token_writes  # noqa: PLC0415

    fetch = kept_cursor.kept_fetch if mode == "kept" else _django_fetch
    rowcount = kept_cursor.kept_rowcount if mode == "kept" else _django_rowcount
    for module in (token_rows, token_writes, sessions):
        module.kept_fetch = fetch  # type: ignore[attr-defined]
        module.kept_rowcount = rowcount  # type: ignore[attr-defined]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cum_bench_kept_ab")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    args = parser.parse_args()
    runner = bench.Bench.for_in_process(
        database_url=args.database_url, redis_url=args.redis_url, keep_db=False
    )
    try:
        runner.prepare()
        os.environ.update(runner.env)
        django.setup()
        return run(runner, args)
    finally:
        runner.stop()


def run(runner: bench.Bench, args: argparse.Namespace) -> int:
    browser, api = bench.in_process_clients(runner)
    code = runner.clients["code"]
    code_basic = bench.basic_auth(code["client_id"], code["client_secret"])
    state = {"refresh": bench.in_process_code_round_trip(browser, api, code)["refresh_token"]}

    def refresh() -> None:
        r = api.post(
            "/token",
            urlencode({"grant_type": "refresh_token", "refresh_token": state["refresh"]}),
            content_type=bench.FORM,
            HTTP_AUTHORIZATION=code_basic,
        )
        assert r.status_code == 200, r.content[:200]
        state["refresh"] = r.json()["refresh_token"]

    def auth_code() -> None:
        bench.in_process_code_round_trip(browser, api, code)

    ops: dict[str, Callable[[], None]] = {"refresh": refresh, "auth_code": auth_code}
    results: dict[tuple[str, str], list[float]] = {}
    for mode in ("django", "kept"):  # warm-up: caches, statements built, prepared
        _use(mode)
        for fn in ops.values():
            for _ in range(20):
                fn()
    for index in range(args.rounds):
        modes = ("django", "kept") if index % 2 == 0 else ("kept", "django")
        for mode in modes:
            _use(mode)
            for name, fn in ops.items():
                start = time.process_time()
                for _ in range(args.requests):
                    fn()
                per = (time.process_time() - start) * 1000 / args.requests
                results.setdefault((name, mode), []).append(per)
    load = os.getloadavg()
    print(
        f"prepared statements: {os.environ.get('DATABASE_PREPARED_STATEMENTS', 'false')}; "
        f"{args.rounds} rounds x {args.requests} requests; load average now {load[0]:.1f}"
    )
    print("| operation | django cursor ms (median, range) | kept cursor ms (median, range) | median diff |")
    print("| --- | ---: | ---: | ---: |")
    for name in ops:
        before, after = results[(name, "django")], results[(name, "kept")]
        diffs = [a - b for a, b in zip(after, before, strict=True)]
        print(
            f"| {name} | {statistics.median(before):.3f} ({min(before):.3f}–{max(before):.3f}) "
            f"| {statistics.median(after):.3f} ({min(after):.3f}–{max(after):.3f}) "
            f"| {statistics.median(diffs):+.3f} |"
        )
    connections.close_all()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
