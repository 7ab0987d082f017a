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
   `--keep-db`; `--state-file F` (with `--keep-db`) writes what is needed to measure that
   database again later (its secrets, the bench clients and resident: mode 0600; throwaway
   values of a throwaway database).

Measuring a kept database again, and comparing two under the same load:

    .venv/bin/python bench/at_scale.py --measure-only --state-file F [--rounds 1] [--no-verify]
    .venv/bin/python bench/at_scale.py --compare SMALL_STATE LARGE_STATE [--rounds 3]
    eval "$(.venv/bin/python bench/at_scale.py --print-env --state-file F)" && \
        .venv/bin/python manage.py verify_ledger --jobs 2      # manage.py on the kept database

`--measure-only` measures the database named in F as it stands (no generation) and prints
one JSON line per round. `--compare` runs `--measure-only` on the two databases alternately,
small then large, `--rounds` times each (verify_ledger only in the first round of each, never
with `--no-verify`), and
prints the medians over the rounds: on a machine shared with other work, both databases then
see the same load, which the sequential small-then-large run cannot promise.

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
import json
import os
import re
import secrets
import shlex
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
    parser.add_argument("--state-file", type=Path, help="with --keep-db: where to save the state; "
                        "with --measure-only: the state to load")  # fmt: skip
    parser.add_argument("--measure-only", action="store_true")
    parser.add_argument("--compare", nargs=2, type=Path, metavar=("SMALL_STATE", "LARGE_STATE"))
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--no-verify", action="store_true", help="skip verify_ledger")
    parser.add_argument("--print-env", action="store_true", help="with --state-file: print the kept "
                        "database's production environment as shell exports (for manage.py)")  # fmt: skip
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare, args)
    if args.print_env:
        if not args.state_file:
            parser.error("--print-env needs --state-file")
        return print_env(json.loads(args.state_file.read_text()), args)
    if args.measure_only and not args.state_file:
        parser.error("--measure-only needs --state-file")
    if args.state_file and not (args.keep_db or args.measure_only):
        parser.error("--state-file without --measure-only needs --keep-db (the database must survive)")
    state = json.loads(args.state_file.read_text()) if args.measure_only else None
    runner = bench.Bench.for_in_process(
        database_url=state["env"]["DATABASE_URL"] if state else args.database_url,
        redis_url=args.redis_url,
        keep_db=args.keep_db,
    )
    try:
        if state:
            state_load(runner, state)
        else:
            runner.prepare()
        os.environ.update(runner.env)
        django.setup()
        if state:
            return measure_only(runner, state, args)
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
    measure = measurer(runner, args)
    small_tag = generate(runner, *SMALL)
    if args.state_file:
        state_save(runner, args.state_file, small_tag)
    small = measure(small_tag, True)
    bench.log("small database measured")
    big_tag = generate(runner, args.residents, args.events)
    big = measure(big_tag, True)
    report(small, big, args)
    return 0


def measurer(runner: bench.Bench, args: argparse.Namespace) -> Callable[[str, bool], dict[str, float]]:
    """Signs the bench resident in and makes the DPO; returns measure(run_tag, verify)."""
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

    def measure(run_tag: str, verify: bool) -> dict[str, float]:
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
        if verify:
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

    return measure


# What --measure-only needs of a kept database: its secrets (the signing keys are sealed under
# them), the bench clients and resident, one generated run's tag.
STATE_ENV = (
    "SECRET_KEY", "KEY_ENCRYPTION_KEY", "CLIENT_SECRET_HMAC_KEY", "CONSENT_MASTER_KEY",
    "PAIRWISE_SUBJECT_KEY", "DATABASE_URL",
)  # fmt: skip


def state_save(runner: bench.Bench, path: Path, run_tag: str) -> None:
    state = {
        "env": {key: runner.env[key] for key in STATE_ENV},
        "clients": runner.clients,
        "resident_email": runner.resident_email,
        "resident_password": runner.resident_password,
        "run_tag": run_tag,
    }
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(state, out)
    bench.log(f"state saved to {path}")


def print_env(state: dict[str, Any], args: argparse.Namespace) -> int:
    """What `manage.py` needs to run against a kept database (e.g. verify_ledger), as exports."""
    runner = bench.Bench.for_in_process(
        database_url=state["env"]["DATABASE_URL"], redis_url=args.redis_url, keep_db=True
    )
    try:
        state_load(runner, state)
        for key, value in runner.env.items():
            if key != "VAR_DIR" and os.environ.get(key) != value:  # what the bench sets
                print(f"export {key}={shlex.quote(value)}")
    finally:
        runner.stop()
    return 0


def state_load(runner: bench.Bench, state: dict[str, Any]) -> None:
    runner.env.update(state["env"])
    runner.clients = state["clients"]
    runner.resident_email = state["resident_email"]
    runner.resident_password = state["resident_password"]


def measure_only(runner: bench.Bench, state: dict[str, Any], args: argparse.Namespace) -> int:
    measure = measurer(runner, args)
    for round_number in range(args.rounds):
        out = measure(state["run_tag"], not args.no_verify and round_number == 0)
        print(json.dumps(out), flush=True)
    return 0


def compare(small_state: Path, large_state: Path, args: argparse.Namespace) -> int:
    rounds: dict[str, list[dict[str, float]]] = {"small": [], "large": []}
    for round_number in range(args.rounds):
        for side, state in (("small", small_state), ("large", large_state)):
            argv = [sys.executable, __file__, "--measure-only", "--state-file", str(state),
                    "--requests", str(args.requests), "--redis-url", args.redis_url]  # fmt: skip
            if round_number or args.no_verify:
                argv.append("--no-verify")
            bench.log(f"round {round_number + 1}/{args.rounds}: {side}")
            result = subprocess.run(argv, cwd=bench.ROOT, capture_output=True, text=True)
            if result.returncode != 0:
                raise bench.BenchError(f"--measure-only failed:\n{result.stdout}\n{result.stderr}")
            # The access log shares stdout (JSON lines too): the figures are the line of W3.
            figures = [line for line in result.stdout.splitlines() if line.startswith('{"W3 ')]
            rounds[side].append(json.loads(figures[-1]))
    medians = [
        {key: statistics.median(r[key] for r in rounds[side] if key in r) for key in rounds[side][0]}
        for side in ("small", "large")
    ]
    print(f"\n{args.rounds} alternating rounds each, medians; {args.requests} requests for W3/W4")
    report(*medians, args, header=False)
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


def report(
    small: dict[str, float], big: dict[str, float], args: argparse.Namespace, *, header: bool = True
) -> None:
    if header:
        print(
            f"\nAt scale: +{args.residents:,} residents, +{args.events:,} events; "
            f"{args.requests} requests for W3/W4"
        )
    print("| measure | small database | at scale | ratio | target |")
    print("| --- | ---: | ---: | ---: | --- |")
    for key in small:
        if key not in big:
            continue
        a, b = small[key], big[key]
        ratio = f"{b / a:.2f}×" if a else "—"
        fmt = "{:,.0f}" if key in ("residents", "ledger events") else "{:,.1f}" if b >= 10 else "{:,.2f}"
        print(f"| {key} | {fmt.format(a)} | {fmt.format(b)} | {ratio} | {TARGETS.get(key, '')} |")


if __name__ == "__main__":
    sys.exit(main())
