"""At-scale checks (issue 14): the same reads on a small database and on a large one.

    .venv/bin/python bench/at_scale.py --residents 1000000 --events 10000000 \
        [--requests 300] [--database-url postgres://postgres@127.0.0.1:5432/cum_bench_scale] \
        [--redis-url redis://127.0.0.1:6379/7] [--keep-db]

1. Prepares a throwaway PostgreSQL database exactly as bench/oidc.py does (its name must
   contain `bench`; production settings with fresh secrets, the project's own commands for
   the partner clients and one resident), then runs in this process under those settings.
2. **Small database**: `bench/generate.py` (as a child process, under development settings:
   the generator refuses production settings; same database and keys) adds 1,000 residents
   and 10,000 ledger events, then every measure below runs.
3. **At scale**: the generator adds `--residents` residents and `--events` events to the same
   database (ANALYZE included), and every measure runs again.
4. Prints one table: small, at scale, ratio, target. The database is dropped at the end unless
   `--keep-db`.

The measures, all in this process through Django's WSGI handler (django.test.Client: no HTTP
server, no sockets; each figure is wall time, so a loaded machine inflates it):
- W3 userinfo: `--requests` GET /userinfo with the bench resident's bearer token; p50 and p99.
- W4 refresh with rotation: `--requests` POST /token (refresh_token grant, client Basic), each
  presenting the newest refresh token; p50 and p99.
- A resident's export: `consent.rights.rights_export` (every rights provider's section) plus
  `consent.export_archive.archive_build` (the zip), for a generated resident with its session,
  tokens, consent states and ledger events; the median of 5.
- verify_ledger: `consent.selectors.ledger_verify`, what `manage.py verify_ledger` runs; one run.
- The DPO console's statistics page, GET /dpo/statistiques/ (default filters) and
  ?bucket=month, by a DPO whose MFA-level session is opened with `identity.signin.session_login`
  (the real sign-in function; the TOTP form itself is not driven); the median of 5 each.
"""

from __future__ import annotations

import argparse
import os
import re
import secrets
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import django

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import oidc as bench

SMALL = (1_000, 10_000)
EXTRA = {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_FOR": "127.0.0.1", "SERVER_NAME": "127.0.0.1"}


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--residents", type=int, default=1_000_000)
    parser.add_argument("--events", type=int, default=10_000_000)
    parser.add_argument("--requests", type=int, default=300, help="W3 and W4 requests per phase")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cum_bench_scale")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/7")
    parser.add_argument("--keep-db", action="store_true")
    args = parser.parse_args()
    runner = bench.Bench.for_in_process(
        database_url=args.database_url, redis_url=args.redis_url, keep_db=args.keep_db
    )
    try:
        runner.prepare()
        os.environ.update(runner.env)
        django.setup()
        return run(runner, args)
    finally:
        from django.db import connections  # noqa: PLC0415 - after django.setup()

        connections.close_all()
        runner.stop()


def generate(runner: bench.Bench, residents: int, events: int) -> str:
    """Run bench/generate.py on the bench database; returns the generated run's tag."""
    env = {**runner.env, "DJANGO_ENV": "development", "DEBUG": "false"}
    bench.log(f"generating {residents:,} residents and {events:,} events")
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, str(Path(__file__).with_name("generate.py")), "--residents", str(residents),
         "--events", str(events)],
        cwd=bench.ROOT, env=env, capture_output=True, text=True,
    )  # fmt: skip
    if result.returncode != 0:
        raise bench.BenchError(f"generate.py failed:\n{result.stdout}\n{result.stderr}")
    bench.log(f"generated in {time.monotonic() - started:.0f} s:\n{result.stdout}")
    return re.search(r"^run: (\w+)$", result.stdout, re.MULTILINE).group(1)  # type: ignore[union-attr]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(fn: Callable[[], Any], n: int, warmup: int = 20) -> list[float]:
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(1000 * (time.perf_counter() - t))
    return out


def run(runner: bench.Bench, args: argparse.Namespace) -> int:
    from django.contrib.auth.models import Group  # noqa: PLC0415 - after django.setup()
    from django.db import connection  # noqa: PLC0415
    from django.test import Client  # noqa: PLC0415

    from consent.export_archive import archive_build  # noqa: PLC0415
    from consent.rights import rights_export  # noqa: PLC0415
    from consent.selectors import ledger_verify  # noqa: PLC0415
    from identity.models import User  # noqa: PLC0415

    code = runner.clients["code"]
    code_basic = bench.basic_auth(code["client_id"], code["client_secret"])
    browser, api = Client(**EXTRA), Client(**EXTRA)
    response = browser.post(
        "/connexion/", {"username": runner.resident_email, "password": runner.resident_password, "next": "/"}
    )
    assert response.status_code == 302, response.status_code

    def round_trip() -> dict[str, Any]:
        return bench.in_process_code_round_trip(browser, api, code)

    # The DPO: staff, "dpo" group, a session at the MFA level.
    dpo = User.objects.create_user(email=f"dpo-{secrets.token_hex(4)}@bench.example", password=None)
    dpo.is_staff = True
    dpo.save(update_fields=["is_staff"])
    dpo.groups.add(Group.objects.get_or_create(name="dpo")[0])
    console = dpo_session(dpo)

    def measure(run_tag: str) -> dict[str, float]:
        tokens = round_trip()
        state = {"refresh": tokens["refresh_token"]}

        def userinfo() -> None:
            r = api.get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
            assert r.status_code == 200, r.status_code

        def refresh() -> None:
            r = api.post(
                "/token",
                urlencode({"grant_type": "refresh_token", "refresh_token": state["refresh"]}),
                content_type=bench.FORM,
                HTTP_AUTHORIZATION=code_basic,
            )
            assert r.status_code == 200, r.content[:200]
            state["refresh"] = r.json()["refresh_token"]

        resident = User.objects.get(email=f"bench-{run_tag}-0@bench.example")

        def export() -> None:
            archive_build(rights_export(resident), language="fr")

        def stats(query: str) -> Callable[[], None]:
            def get() -> None:
                r = console.get("/dpo/statistiques/" + query)
                assert r.status_code == 200, r.status_code

            return get

        out: dict[str, float] = {}
        w3 = timed(userinfo, args.requests)
        out["W3 userinfo p50 ms"], out["W3 userinfo p99 ms"] = percentile(w3, 0.5), percentile(w3, 0.99)
        w4 = timed(refresh, args.requests)
        out["W4 refresh p50 ms"], out["W4 refresh p99 ms"] = percentile(w4, 0.5), percentile(w4, 0.99)
        out["export ms (median of 5)"] = statistics.median(timed(export, 5, warmup=1))
        t = time.perf_counter()
        result = ledger_verify()
        out["verify_ledger s"] = time.perf_counter() - t
        assert result.ok, result.first_problem
        out["ledger events"] = float(result.size)
        out["DPO statistics ms (median of 5)"] = statistics.median(timed(stats(""), 5, warmup=1))
        out["DPO statistics ?bucket=month ms"] = statistics.median(timed(stats("?bucket=month"), 5, warmup=1))
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM identity_user")
            out["residents"] = float(cursor.fetchone()[0])
        return out

    small_tag = generate(runner, *SMALL)
    small = measure(small_tag)
    bench.log("small database measured")
    big_tag = generate(runner, args.residents, args.events)
    big = measure(big_tag)
    report(small, big, args)
    return 0


def dpo_session(dpo: Any) -> Any:
    from importlib import import_module  # noqa: PLC0415

    from django.conf import settings  # noqa: PLC0415 - after django.setup()
    from django.http import HttpRequest  # noqa: PLC0415
    from django.test import Client  # noqa: PLC0415

    from identity.signin import session_login  # noqa: PLC0415

    request = HttpRequest()
    request.session = import_module(settings.SESSION_ENGINE).SessionStore()
    request.META.update({"HTTP_USER_AGENT": "bench", "REMOTE_ADDR": "127.0.0.1"})
    session_login(request=request, user=dpo, amr=["pwd", "otp", "mfa"])
    request.session.save()
    client = Client(**EXTRA)
    client.cookies[settings.SESSION_COOKIE_NAME] = request.session.session_key
    return client


TARGETS = {
    "W3 userinfo p99 ms": "≤ 1.5× small",
    "W4 refresh p99 ms": "≤ 1.5× small",
    "export ms (median of 5)": "< 5,000",
    "verify_ledger s": "< 60",
    "DPO statistics ms (median of 5)": "< 2,000",
    "DPO statistics ?bucket=month ms": "< 2,000",
}


def report(small: dict[str, float], big: dict[str, float], args: argparse.Namespace) -> None:
    print(
        f"\nAt scale: +{args.residents:,} residents, +{args.events:,} events; "
        f"{args.requests} requests for W3/W4"
    )
    print("| measure | small database | at scale | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for key in small:
        a, b = small[key], big[key]
        ratio = f"{b / a:.2f}×" if a else "—"
        fmt = "{:,.0f}" if key in ("residents", "ledger events") else "{:,.1f}" if b >= 10 else "{:,.2f}"
        print(f"| {key} | {fmt.format(a)} | {fmt.format(b)} | {ratio} | {TARGETS.get(key, '')} |")


if __name__ == "__main__":
    sys.exit(main())
