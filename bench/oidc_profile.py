"""In-process CPU profile of the OIDC hot paths (companion of bench/oidc.py).

    .venv/bin/python bench/oidc_profile.py [--requests 400] [--only userinfo ...] \
        [--database-url postgres://postgres@127.0.0.1:5432/cum_bench_profile]

Prepares a throwaway PostgreSQL database exactly as bench/oidc.py does (production
settings, the project's own management commands), then drives each operation through
Django's WSGI handler in this process (django.test.Client: no sockets, no gunicorn) and
reports, per operation, the number of SQL statements, the CPU time per request
(time.process_time, which machine noise does not inflate the way it inflates wall time)
and the top functions by cumulative and own CPU time under cProfile (timer:
process_time). cProfile's overhead inflates Python-heavy code about x5 and not C code
(e.g. RSA signing), so use its shares with care; `--components` times single building
blocks without any profiler. django.test.Client adds about 0.3 ms per request.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import hashlib
import io
import json
import os
import pstats
import re
import sys
import time
from collections.abc import Callable, Iterator
from http.cookies import SimpleCookie
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import django
from django.db import DEFAULT_DB_ALIAS, connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from jwcrypto import jwt

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import oidc as bench

from common.crypto import keyed_hash

OPS = (
    "discovery",
    "client_credentials",
    "introspection",
    "userinfo",
    "refresh",
    "auth_code",
    "signin",
    "signin_form",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--only", nargs="*", choices=OPS)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--components", action="store_true", help="also time building blocks in isolation")
    parser.add_argument("--database-url", default="postgres://postgres@127.0.0.1:5432/cum_bench_profile")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/6")
    args = parser.parse_args()

    runner = bench.Bench.for_in_process(
        database_url=args.database_url, redis_url=args.redis_url, keep_db=False
    )
    try:
        runner.prepare()
        os.environ.update(runner.env)
        django.setup()
        return profile(runner, args)
    finally:
        runner.stop()


def profile(runner: bench.Bench, args: argparse.Namespace) -> int:
    browser, api = bench.in_process_clients(runner)
    cc, code = runner.clients["cc"], runner.clients["code"]
    rs = code  # introspects its own tokens (RFC 7662 §4: a token is described to its client)
    cc_basic = bench.basic_auth(cc["client_id"], cc["client_secret"])
    rs_basic = bench.basic_auth(rs["client_id"], rs["client_secret"])
    code_basic = bench.basic_auth(code["client_id"], code["client_secret"])

    def round_trip() -> dict:
        return bench.in_process_code_round_trip(browser, api, code)

    tokens = round_trip()
    state = {"refresh": tokens["refresh_token"], "n": 0}

    def discovery() -> None:
        state["n"] += 1
        path = "/jwks.json" if state["n"] % 2 else "/.well-known/openid-configuration"
        assert api.get(path).status_code == 200

    def client_credentials() -> None:
        r = api.post(
            "/token", "grant_type=client_credentials", content_type=bench.FORM, HTTP_AUTHORIZATION=cc_basic
        )
        assert r.status_code == 200

    def introspection() -> None:
        r = api.post(
            "/introspect",
            urlencode({"token": tokens["access_token"]}),
            content_type=bench.FORM,
            HTTP_AUTHORIZATION=rs_basic,
        )
        assert r.status_code == 200 and b'"active": true' in r.content

    def userinfo() -> None:
        r = api.get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
        assert r.status_code == 200

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
        round_trip()

    device_cookie: dict[str, str] = {}
    visitor = Client(enforce_csrf_checks=True, **bench.IN_PROCESS_REQUEST)  # one handler, as in a worker

    def signin() -> None:
        # A returning resident in their own browser, whose session has ended: a fresh cookie
        # jar holding only the known-device cookie; GET the form (CSRF enforced), POST it.
        visitor.cookies = SimpleCookie()
        for name, value in device_cookie.items():
            visitor.cookies[name] = value
        page = visitor.get("/connexion/", secure=True)
        token = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', page.content)
        assert page.status_code == 200 and token, page.status_code
        r = visitor.post(
            "/connexion/",
            {
                "username": runner.resident_email,
                "password": runner.resident_password,
                "csrfmiddlewaretoken": token.group(1).decode(),
                "next": "/",
            },
            secure=True,
            HTTP_ORIGIN="https://127.0.0.1",
        )
        assert r.status_code == 302, (r.status_code, r.content[:300])
        for name, morsel in r.cookies.items():
            if "known_device" in name:
                device_cookie[name] = morsel.value

    def signin_form() -> None:
        # The GET half of `signin` alone: a visitor without a session is shown the form.
        visitor.cookies = SimpleCookie()
        page = visitor.get("/connexion/", secure=True)
        assert page.status_code == 200, page.status_code

    funcs = {
        f.__name__: f
        for f in (
            discovery,
            client_credentials,
            introspection,
            userinfo,
            refresh,
            auth_code,
            signin,
            signin_form,
        )
    }
    n = args.requests
    if args.components:
        components(runner, tokens, n)
    for name in args.only or OPS:
        measure(name, funcs[name], n, top=args.top)
    connections.close_all()
    return 0


def _rss_mib() -> float:
    """This process's resident memory (Linux), to see whether an operation keeps growing it."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


@contextlib.contextmanager
def _hash_cpu() -> Iterator[list[float]]:
    """CPU seconds spent in identity.hashers.Argon2idHasher's Argon2id computations (checks and
    hashes, the decoy check of an unknown address included) while the block runs: a one-item
    list, empty when no hash was computed. Argon2id is C code in this thread, so
    process_time around each call is its cost; the rest of a sign-in is what is left."""
    from identity import hashers  # noqa: PLC0415 - after django.setup()

    spent: list[float] = []
    originals = {name: getattr(hashers.Argon2idHasher, name) for name in ("_verify_exact", "encode")}

    def timed(original: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return original(*args, **kwargs)
            finally:
                if not spent:
                    spent.append(0.0)
                spent[0] += time.process_time() - start

        return wrapper

    for name, original in originals.items():
        setattr(hashers.Argon2idHasher, name, timed(original))
    try:
        yield spent
    finally:
        for name, original in originals.items():
            setattr(hashers.Argon2idHasher, name, original)


def measure(name: str, fn: Callable[[], object], n: int, *, top: int) -> None:
    """One operation: its SQL statements, its CPU and wall time per call, then under cProfile."""
    for _ in range(min(50, n)):
        fn()  # warm caches and code paths
    with CaptureQueriesContext(connection) as queries:
        fn()
    print(f"\n## {name}: {len(queries.captured_queries)} SQL statements per operation")
    for query in queries.captured_queries:
        print("   ", " ".join(query["sql"].split())[:150])
    with _hash_cpu() as hash_cpu:
        wall0, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            fn()
        wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    prof = cProfile.Profile(time.process_time)  # CPU only: waits on PostgreSQL excluded
    prof.enable()
    for _ in range(n):
        fn()
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    total = stats.total_tt
    print(
        f"\n## {name}: {1000 * cpu / n:.2f} ms CPU/op, {1000 * wall / n:.2f} ms wall/op "
        f"in process (no HTTP server), {n} ops; cProfile total {1000 * total / n:.2f} ms/op; "
        f"process VmRSS {_rss_mib():.1f} MiB after"
    )
    if hash_cpu:
        print(
            f"## {name}: of which {1000 * hash_cpu[0] / n:.2f} ms CPU/op in the password hasher's "
            f"Argon2id computations, {1000 * (cpu - hash_cpu[0]) / n:.2f} ms CPU/op around them"
        )
    rows = []
    for (filename, line, func), (_cc, _nc, tt, ct, _callers) in stats.stats.items():  # type: ignore[attr-defined]
        short = bench._short(f"{func} ({filename}:{line})")
        rows.append((ct, tt, short))
    print("cumulative (share of cProfile total; generic wrappers left out):")
    boring = (
        "test/client.py",
        "handlers/exception.py",
        "utils/deprecation.py",
        "generic/base.py",
        "utils/decorators.py",
        "decorators/csrf.py",
        "decorators/debug.py",
        "decorators/http.py",
        "oauthlib/oauth2/rfc6749/endpoints/base.py",
        "bench/oidc_profile.py",
    )
    shown = [row for row in sorted(rows, reverse=True) if not any(b in row[2] for b in boring)]
    for ct, _tt, short in shown[:top]:
        print(f"  {100 * ct / total:5.1f}%  {short}")
    print("own time:")
    for tt, _ct, short in sorted(((tt, ct, s) for ct, tt, s in rows), reverse=True)[: top // 2]:
        print(f"  {100 * tt / total:5.1f}%  {short}")
    sys.stdout.flush()


def components(runner: bench.Bench, tokens: dict, n: int) -> None:
    """CPU cost of single building blocks, without profiler overhead."""
    # Models can be imported only after django.setup(), which main() runs once the bench's
    # environment (database, Redis, production settings) is in place.
    from oauth2_provider.models import (  # noqa: PLC0415 - after django.setup()
        get_access_token_model,
        get_application_model,
    )

    from identity.keys import active_signing_key, published_jwks  # noqa: PLC0415 - after django.setup()

    def cpu(label: str, fn, repeat: int = n) -> None:
        for _ in range(10):
            fn()
        c0, w0 = time.process_time(), time.perf_counter()
        for _ in range(repeat):
            fn()
        c, w = time.process_time() - c0, time.perf_counter() - w0
        print(f"  {1000 * c / repeat:7.3f} ms CPU  {1000 * w / repeat:7.3f} ms wall  {label}")

    print("\n## building blocks (no profiler)")
    client = Client(HTTP_X_FORWARDED_PROTO="https", SERVER_NAME="127.0.0.1")
    cpu("GET /healthz through the full middleware stack (framework floor)", lambda: client.get("/healthz"))
    checksum = hashlib.sha256(tokens["access_token"].encode()).hexdigest()
    AccessToken = get_access_token_model()
    cpu(
        "AccessToken select_related(user, application).filter(checksum).first() (DOT _load_access_token)",
        lambda: (
            AccessToken.objects.select_related("user", "application").filter(token_checksum=checksum).first()
        ),
    )
    cpu(
        "same row by .values(4 columns) (what a lean lookup costs)",
        lambda: (
            AccessToken.objects.filter(token_checksum=checksum)
            .values("id", "expires", "scope", "user_id")
            .first()
        ),
    )

    def raw() -> None:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()

    cpu("raw SELECT 1 round trip (what CONN_HEALTH_CHECKS adds per request)", raw)
    if connection.vendor == "postgresql":
        # The per-request check itself (config/postgresql/base.py), as at a request's first
        # query, each kind in turn in blocks of n / 10, so that both see the same machine.
        wrapper = connections[DEFAULT_DB_ALIAS]
        connection.ensure_connection()
        kept_kind, kept_enabled = wrapper.health_check_kind, wrapper.health_check_enabled
        wrapper.health_check_enabled = True

        def check() -> None:
            wrapper.health_check_done = False
            wrapper.close_if_health_check_failed()

        spent = {"socket": [0.0, 0.0], "query": [0.0, 0.0]}
        block = max(10, n // 10)
        for _ in range(10):
            for kind in ("query", "socket"):
                wrapper.health_check_kind = kind
                check()
                c0, w0 = time.process_time(), time.perf_counter()
                for _ in range(block):
                    check()
                spent[kind][0] += time.process_time() - c0
                spent[kind][1] += time.perf_counter() - w0
        wrapper.health_check_kind, wrapper.health_check_enabled = kept_kind, kept_enabled
        for kind, (c, w) in spent.items():
            print(
                f"  {1000 * c / (10 * block):7.3f} ms CPU  {1000 * w / (10 * block):7.3f} ms wall  "
                f"per-request health check, DATABASE_HEALTH_CHECK={kind}"
            )
    Client_ = get_application_model()
    client_id = runner.clients["cc"]["client_id"]
    cpu("Client.objects.get(client_id=...) (client lookup)", lambda: Client_.objects.get(client_id=client_id))
    cpu("keyed_hash(secret) (HMAC-SHA-256 client secret check)", lambda: keyed_hash("x" * 43))
    cpu("published_jwks() (JWKS query, every /jwks.json)", published_jwks)
    claims = json.dumps(
        {"iss": bench.ISSUER, "sub": "1", "aud": "x", "exp": 2, "iat": 1, "nonce": "n", "jti": "j"}
    )
    for alg in ("RS256", "ES256"):
        key = active_signing_key(alg)

        def sign(key=key) -> None:
            token = jwt.JWT(header={"alg": key.algorithm, "kid": key.kid, "typ": "JWT"}, claims=claims)
            token.make_signed_token(key.jwk)
            token.serialize()

        cpu(
            f"jwcrypto {alg} ID-token signature ({'RSA-3072' if alg == 'RS256' else 'P-256'})",
            sign,
            max(20, n // 4),
        )
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
