"""CPU per request of the bearer path (W1, W2, W3) through the production WSGI application,
in process (no HTTP server), by time.process_time.

    cd <tree> && .venv/bin/python <this file> [--requests 2000] [--rounds 5] \
        [--database-url postgres://postgres@127.0.0.1:5432/cum_bearer_inproc_bench] [--redis-url ...]

Prepares a throwaway PostgreSQL database as bench/oidc.py does (production settings, JSON
logs to stderr — redirect it to /dev/null, as a server's log would go to a pipe), then calls
config.wsgi.application with the environ granian would build for each request, in rounds of
the three operations, and prints each operation's median CPU ms per request over the rounds.
It imports the tree it is run from (the current directory), so the same file measures a
"before" worktree and this one: run them alternately.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import oidc as bench  # noqa: E402


def environ(method: str, path: str, headers: dict[str, str], body: bytes = b"") -> dict[str, Any]:
    env: dict[str, Any] = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_FOR": "127.0.0.1",
    }
    if body:
        env["CONTENT_TYPE"] = bench.FORM
        env["CONTENT_LENGTH"] = str(len(body))
    for name, value in headers.items():
        env["HTTP_" + name.upper().replace("-", "_")] = value
    return env


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--only", nargs="*", choices=("client_credentials", "introspection", "userinfo"))
    parser.add_argument(
        "--components",
        action="store_true",
        help="instead: time this branch's building blocks against the former ones, alternately in "
        "this process (run from the branch's tree)",
    )
    return bench.in_process_main(
        parser,
        database_url="postgres://postgres@127.0.0.1:5432/cum_bearer_inproc_bench",
        redis_url="redis://127.0.0.1:6379/11",
        body=run,
    )


def run(runner: bench.Bench, args: argparse.Namespace) -> int:
    import django  # noqa: PLC0415

    django.setup()
    from config.wsgi import application  # noqa: PLC0415

    browser, api = bench.in_process_clients(runner)
    cc, code = runner.clients["cc"], runner.clients["code"]
    tokens = bench.in_process_code_round_trip(browser, api, code)
    cc_basic = bench.basic_auth(cc["client_id"], cc["client_secret"])
    rs_basic = bench.basic_auth(code["client_id"], code["client_secret"])
    introspect_body = urlencode({"token": tokens["access_token"]}).encode()
    ops = {
        "client_credentials": lambda: environ(
            "POST", "/token", {"Authorization": cc_basic}, b"grant_type=client_credentials"
        ),
        "introspection": lambda: environ("POST", "/introspect", {"Authorization": rs_basic}, introspect_body),
        "userinfo": lambda: environ(
            "GET", "/userinfo", {"Authorization": f"Bearer {tokens['access_token']}"}
        ),
    }
    if args.components:
        components(tokens["access_token"], args)
        return 0
    if args.only:
        ops = {name: make for name, make in ops.items() if name in args.only}
    status: list[str] = []

    def start_response(s: str, headers: list, *exc: Any) -> None:
        status.append(s)

    def call(make: Any) -> bytes:
        status.clear()
        result = application(make(), start_response)
        body = b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
        assert status and status[0].startswith("200"), (status, body[:200])
        return body

    for make in ops.values():
        for _ in range(50):
            call(make)
    spent: dict[str, list[float]] = {name: [] for name in ops}
    for _ in range(args.rounds):
        for name, make in ops.items():
            envs = iter([make() for _ in range(args.requests)])
            c0 = time.process_time()
            for _ in range(args.requests):
                call(lambda envs=envs: next(envs))
            spent[name].append(1000 * (time.process_time() - c0) / args.requests)
    print(json.dumps({name: round(statistics.median(v), 4) for name, v in spent.items()}), flush=True)
    print(
        json.dumps({name: [round(x, 4) for x in v] for name, v in spent.items()}), file=sys.stdout, flush=True
    )
    return 0


def _alternate(variants: dict[str, Any], args: argparse.Namespace) -> None:
    """Each variant `args.requests` times per round, in turn, over `args.rounds` rounds: median
    CPU microseconds per call."""
    spent: dict[str, list[float]] = {name: [] for name in variants}
    for fn in variants.values():
        for _ in range(50):
            fn()
    for _ in range(args.rounds):
        for name, fn in variants.items():
            c0 = time.process_time()
            for _ in range(args.requests):
                fn()
            spent[name].append(1e6 * (time.process_time() - c0) / args.requests)
    for name, values in spent.items():
        print(
            f"  {statistics.median(values):8.2f} us CPU  {name}  {[round(v, 1) for v in values]}", flush=True
        )


def components(access_token: str, args: argparse.Namespace) -> None:
    from common import request_log  # noqa: PLC0415
    from identity.oidc import access_tokens  # noqa: PLC0415
    from identity.oidc.sharing import sharing_purpose_code  # noqa: F401, PLC0415

    context = request_log.RequestContext(
        request_id="5194518483fed0c8f5699ac4f21c297a", method="GET", route="/userinfo", client_id="c" * 40
    )
    token = request_log._current.set(context)

    def former_line() -> str:  # what _write_access_line built before: the dict, then _json_line
        http = request_log._http(context, 200, 0.51)
        return request_log._json_line(time.time(), "INFO", "cum.access", f"GET /userinfo {200}", http)

    def access_line() -> str:
        return request_log._access_line(time.time(), context, 200, 0.51)

    assert former_line()[30:] == access_line()[30:]
    print("## the access line", flush=True)
    _alternate({"former (_json_line)": former_line, "_access_line": access_line}, args)
    request_log._current.reset(token)

    # The resident read (userinfo's statement, without the gate), date-times by Django's
    # loader (the former statement: USE_TZ's UTC not recognised) or as epochs.
    def read(utc: Any) -> Any:
        def run() -> Any:
            access_tokens.UTC = utc  # type: ignore[attr-defined]
            try:
                return access_tokens._read_resident(access_token, None)
            finally:
                access_tokens.UTC = _UTC  # type: ignore[attr-defined]

        return run

    from datetime import UTC as _UTC  # noqa: PLC0415

    from django.db import connection  # noqa: PLC0415

    connection.ensure_connection()
    raw = connection.connection.cursor()  # psycopg's, with Django's loaders registered

    def loaded() -> Any:
        raw.execute('SELECT "updated_at" FROM "identity_user" LIMIT 1')
        return raw.fetchone()[0]

    epoch_sql = (
        f'SELECT {access_tokens._epoch_micros(chr(34) + "updated_at" + chr(34))} FROM "identity_user" LIMIT 1'
    )

    def as_epoch() -> Any:
        raw.execute(epoch_sql)
        return access_tokens._from_epoch_micros(raw.fetchone()[0])

    assert loaded() == as_epoch()
    print("## one timestamptz read on a raw cursor (round trip included)", flush=True)
    _alternate(
        {"Django's timestamptz loader": loaded, "epoch microseconds + _from_epoch_micros": as_epoch}, args
    )
    former, epochs = read(object()), read(_UTC)
    assert former()[0].updated_at == epochs()[0].updated_at
    print("## the resident read (one row, its updated_at)", flush=True)
    _alternate({"Django's timestamptz loader": former, "epoch microseconds": epochs}, args)

    bearer2_components(access_token, args)


def bearer2_components(access_token: str, args: argparse.Namespace) -> None:
    """Branch bearer2's pieces against the former ones: introspection's lean read, the User
    built by one itemgetter, the stored headers filled, the claims' plan per set of scopes."""
    from django.db import connection  # noqa: PLC0415
    from django.db.models import DEFERRED  # noqa: PLC0415

    from config import bearer_path  # noqa: PLC0415
    from identity.client_cache import client_by_client_id  # noqa: PLC0415
    from identity.models import User  # noqa: PLC0415
    from identity.oidc import access_tokens, sharing  # noqa: PLC0415
    from identity.oidc.claims import registry  # noqa: PLC0415

    claims = access_tokens.decode(access_token, verify=False)
    assert claims is not None

    def full_read() -> Any:  # what live_token read before: userinfo's columns
        return access_tokens._read_resident(access_token, None)

    def lean_read() -> Any:
        return access_tokens._read_resident(access_token, None, lean=True)

    assert full_read()[0].pk == lean_read()[0].pk
    print(
        "## introspection's resident read (live_token): every claim column, or id and is_active", flush=True
    )
    _alternate({"userinfo's columns (before)": full_read, "id, is_active (lean)": lean_read}, args)

    query = access_tokens._resident_token_query(connection, with_gate=False)
    resident = full_read()[0]
    values = [
        getattr(resident, field.attname)
        for field, slot in zip(User._meta.concrete_fields, query.slots, strict=True)
        if slot >= 0
    ]

    def build_listcomp() -> Any:
        return User(*[values[slot] if slot >= 0 else DEFERRED for slot in query.slots])

    def build_itemgetter() -> Any:
        extended = [*values, DEFERRED]
        return User(*query.arguments(extended))

    print("## the resident's User from the row's values", flush=True)
    _alternate({"list of slots (before)": build_listcomp, "one itemgetter": build_itemgetter}, args)

    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", "231"),
        ("Cache-Control", "no-store"),
        ("Pragma", "no-cache"),
        ("X-Request-ID", "x"),
        ("Strict-Transport-Security", "max-age=31536000"),
        ("X-Content-Type-Options", "nosniff"),
        ("Referrer-Policy", "same-origin"),
        ("Cross-Origin-Opener-Policy", "same-origin"),
        ("X-Frame-Options", "DENY"),
        ("Content-Security-Policy", "default-src 'none'"),
        ("Vary", "Origin"),
    ]
    former = [(n, None if n.lower() in bearer_path._PER_ANSWER else v) for n, v in headers]
    template = bearer_path._Template(headers)
    body = b'{"sub": "x"}' * 20

    def filled_before() -> Any:
        per_answer = {"content-length": str(len(body)), "x-request-id": "5194518483fed0c8f5699ac4f21c297a"}
        return [(n, per_answer[n.lower()] if v is None else v) for n, v in former]

    def filled_after() -> Any:
        return bearer_path._filled(template, body, "5194518483fed0c8f5699ac4f21c297a")

    assert filled_before() == filled_after()
    print("## the stored headers filled per answer", flush=True)
    _alternate({"per header (before)": filled_before, "positions kept": filled_after}, args)

    user = full_read()[0]
    client = client_by_client_id(claims["client_id"])
    scopes = set(claims["scope"].split())

    def read_claims_before() -> Any:
        wanted = frozenset(scopes)
        out: dict[str, Any] = {}
        for provider, names in registry._provider_scopes:
            own = names & wanted
            if not own:
                continue
            read = (
                provider.read(user, own)
                if provider.client_read is None or client is None
                else provider.client_read(user, own, client)
            )
            for name, value in read.items():
                if registry._claim_scope.get(name) in own:
                    out[name] = value
        return out

    def read_claims_after() -> Any:
        return registry.read_claims(user, scopes, client=client)

    def purposes_before() -> Any:
        return registry.purposes_needed(scopes)

    def purposes_after() -> Any:
        return registry.scope_purposes(frozenset(scopes))

    assert read_claims_before() == read_claims_after()
    print("## read_claims, and the gating purposes of the release", flush=True)
    _alternate(
        {
            "read_claims (before)": read_claims_before,
            "read_claims (plan)": read_claims_after,
            "purposes_needed (before)": purposes_before,
            "scope_purposes (plan)": purposes_after,
        },
        args,
    )
    print("## released_claims (this branch)", flush=True)
    _alternate({"released_claims": lambda: sharing.released_claims(client, user, scopes, granted=True)}, args)


if __name__ == "__main__":
    raise SystemExit(main())
