"""CPU per authorize request (W5's first half: a signed-in browser, the internal service's
information page already acknowledged, PKCE S256, no `prompt`) through the production WSGI
application, in process (no HTTP server), by time.process_time.

    cd <tree> && /work/main/.venv/bin/python <this file> [--requests 1000] [--rounds 5] \
        [--database-url postgres://postgres@127.0.0.1:5432/cum_authorize_inproc_bench] \
        [--redis-url ...] [--state state.json] [--pieces] 2>/dev/null

Prepares a throwaway PostgreSQL database as bench/oidc.py does (production settings), signs
the benchmark's resident in with Django's test client, goes once through the whole round
trip (the information page is shown once), then calls config.wsgi.application with the
environ granian would build for GET /authorize (the browser's cookies, a new PKCE challenge
per request) and prints the median CPU ms per request over the rounds (each answer checked:
a 303 to the client with a code). It imports the tree it is run from (the current
directory), so the same file measures a "before" worktree and another: run them alternately
(`--state` keeps the prepared database and its secrets between runs).

`--pieces` also times single functions of the request (wrapped by time.process_time, each
figure inclusive of what it calls; the wrappers' own cost is in the total), in microseconds
per request. `--experiment MODULE` first alternates blocks of requests with the module's
`toggle(on)` switched off and on (off, on, on, off, …: one process, so the machine's drift
hits both sides alike) and prints each side's median and the paired differences.
`--profile N` runs one more round under cProfile (`--callees` for some functions' callees).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import io
import json
import secrets
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import oidc as bench  # noqa: E402

# Functions timed by --pieces: (module, attribute path). Missing ones are skipped (the trees
# compared need not have the same functions).
PIECES = (
    ("config.middleware", "RequestLogMiddleware.__call__"),
    ("config.middleware", "SessionMiddleware.__call__"),
    ("django.contrib.sessions.backends.cached_db", "SessionStore.load"),
    ("config.middleware", "LocaleMiddleware.__call__"),
    ("identity.middleware", "BrowserSessionMiddleware.__call__"),
    ("identity.sessions", "browser_session_with_user"),
    ("identity.sessions", "browser_session_check"),
    ("django.contrib.auth", "get_user"),
    ("config.middleware", "MessageMiddleware.__call__"),
    ("identity.oidc.views.authorize", "AuthorizeView.dispatch"),
    ("identity.oidc.views.authorize", "AuthorizeView._parameters"),
    ("identity.oidc.views.authorize", "AuthorizeView._validate"),
    ("identity.oidc.views.authorize", "AuthorizeView._sign_in"),
    ("identity.oidc.views.authorize", "AuthorizeView._level"),
    ("identity.oidc.views.authorize", "AuthorizeView._consent"),
    ("identity.oidc.internal_notice", "internal_notice_covers"),
    ("identity.oidc.authorization_request", "AuthorizationMixin._finish"),
    ("identity.oidc.code_issuance", "issue_validated_code"),
    ("identity.oidc.code_issuance", "_write_code"),
    ("identity.oidc.token_writes", "insert_row"),
    ("identity.oidc.token_writes", "_values"),
    ("common.kept_cursor", "_run"),
    ("django.core.cache.backends.redis", "RedisCacheClient.get"),
    ("django.db.models.base", "Model.__init__"),
    ("django.utils.cache", "add_never_cache_headers"),
    ("identity.oidc.errors", "ClientRedirect.__init__"),
    ("django.middleware.locale", "LocaleMiddleware.process_request"),
    ("django.middleware.locale", "LocaleMiddleware.process_response"),
    ("django.contrib.sessions.middleware", "SessionMiddleware.process_response"),
    ("django.contrib.sessions.middleware", "SessionMiddleware.process_request"),
    ("common.request_log", "begin"),
    ("common.request_log", "end"),
    ("django.dispatch.dispatcher", "Signal.send"),
    ("django.core.handlers.base", "BaseHandler.resolve_request"),
    ("identity.oidc.server", "Server.validate_authorization_params"),
    ("identity.client_cache", "client_by_client_id"),
    ("django.http.request", "QueryDict.__init__"),
    ("django.core.handlers.wsgi", "WSGIRequest.__init__"),
    ("django.contrib.auth.backends", "ModelBackend.get_user"),
)


def environ(path: str, query: str, cookie: str) -> dict[str, Any]:
    return {
        "REQUEST_METHOD": "GET",
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": query,
        "SERVER_NAME": "127.0.0.1",
        "SERVER_PORT": "8000",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "REMOTE_ADDR": "127.0.0.1",
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": sys.stderr,
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
        "HTTP_HOST": "127.0.0.1:8000",
        "HTTP_X_FORWARDED_PROTO": "https",
        "HTTP_X_FORWARDED_FOR": "127.0.0.1",
        "HTTP_USER_AGENT": "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
        "HTTP_ACCEPT_LANGUAGE": "fr-FR,fr;q=0.9,en;q=0.5",
        "HTTP_COOKIE": cookie,
    }


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pieces", action="store_true")
    parser.add_argument("--experiment", help="a module with toggle(on: bool): rounds alternated off/on")
    parser.add_argument("--callees", nargs="*", help="with --profile: the callees of these functions")
    parser.add_argument(
        "--profile", type=int, default=0, help="cProfile one more round: print this many functions"
    )
    return bench.in_process_main(
        parser,
        database_url="postgres://postgres@127.0.0.1:5432/cum_authorize_inproc_bench",
        redis_url="redis://127.0.0.1:6379/13",
        body=run,
    )


def _wrap_pieces() -> dict[str, list[float]]:
    import importlib  # noqa: PLC0415

    spent: dict[str, list[float]] = defaultdict(list)
    for module_name, attribute in PIECES:
        module = importlib.import_module(module_name)
        owner: Any = module
        *path, name = attribute.split(".")
        try:
            for part in path:
                owner = getattr(owner, part)
            original = getattr(owner, name)
        except AttributeError:
            continue
        key = f"{module_name}.{attribute}"
        static = isinstance(owner.__dict__.get(name) if isinstance(owner, type) else None, staticmethod)

        def timed(*a: Any, _original: Any = original, _key: str = key, **k: Any) -> Any:
            c0 = time.process_time()
            try:
                return _original(*a, **k)
            finally:
                spent[_key].append(time.process_time() - c0)

        setattr(owner, name, staticmethod(timed) if static else timed)
    return spent


def run(runner: bench.Bench, args: argparse.Namespace) -> int:
    import django  # noqa: PLC0415

    django.setup()
    spent_pieces = _wrap_pieces() if args.pieces else {}
    from config.wsgi import application  # noqa: PLC0415

    browser, api = bench.in_process_clients(runner)
    code = runner.clients["code"]
    bench.in_process_code_round_trip(browser, api, code)  # the information page, once
    cookie = "; ".join(f"{name}={morsel.value}" for name, morsel in browser.cookies.items())

    def make() -> dict[str, Any]:
        verifier = secrets.token_urlsafe(48)
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": code["client_id"],
                "redirect_uri": bench.REDIRECT_URI,
                "scope": "openid profile email",
                "state": secrets.token_urlsafe(16),
                "nonce": secrets.token_urlsafe(16),
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        return environ("/authorize", query, cookie)

    status: list[str] = []
    headers: list[list[tuple[str, str]]] = []

    def start_response(s: str, h: list, *exc: Any) -> None:
        status.append(s)
        headers.append(h)

    def call(env: dict[str, Any]) -> None:
        status.clear()
        headers.clear()
        result = application(env, start_response)
        body = b"".join(result)
        close = getattr(result, "close", None)
        if close is not None:
            close()
        location = dict(headers[0]).get("Location", "") if headers else ""
        assert status and status[0].startswith("303"), (status, body[:300])
        assert location.startswith(bench.REDIRECT_URI + "?code="), location

    for _ in range(100):
        call(make())
    if args.experiment:
        _experiment(args, make, call)
    for values in spent_pieces.values():
        values.clear()
    per_round: list[float] = []
    for _ in range(args.rounds):
        envs = [make() for _ in range(args.requests)]
        c0 = time.process_time()
        for env in envs:
            call(env)
        per_round.append(1000 * (time.process_time() - c0) / args.requests)
    if args.profile:
        _profile(args, make, call)
    median = round(statistics.median(per_round), 4)
    print(
        json.dumps({"authorize_ms": median, "rounds": [round(x, 4) for x in per_round]}),
        flush=True,
    )
    if spent_pieces:
        total = args.rounds * args.requests
        for key, values in spent_pieces.items():
            print(f"  {1e6 * sum(values) / total:8.1f} us/request  ({len(values) / total:.2f} calls)  {key}")
    return 0


def _experiment(args: argparse.Namespace, make: Any, call: Any) -> None:
    """`--experiment`: its module's toggle(on) switched between rounds (off, on, on, off, …):
    the median CPU ms per request of each side and the paired differences (on − off)."""
    import importlib  # noqa: PLC0415

    experiment = importlib.import_module(args.experiment)
    on_off: dict[bool, list[float]] = {False: [], True: []}
    for index in range(2 * args.rounds):
        on = index % 2 == (index // 2) % 2
        experiment.toggle(on)
        envs = [make() for _ in range(args.requests)]
        c0 = time.process_time()
        for env in envs:
            call(env)
        on_off[on].append(1000 * (time.process_time() - c0) / args.requests)
    experiment.toggle(False)
    diffs = [b - a for a, b in zip(on_off[False], on_off[True], strict=True)]
    print(
        json.dumps(
            {
                "off": round(statistics.median(on_off[False]), 4),
                "on": round(statistics.median(on_off[True]), 4),
                "paired_diff_median": round(statistics.median(diffs), 4),
                "pairs_lower": f"{sum(d < 0 for d in diffs)}/{len(diffs)}",
            }
        ),
        flush=True,
    )


def _profile(args: argparse.Namespace, make: Any, call: Any) -> None:
    import cProfile  # noqa: PLC0415
    import pstats  # noqa: PLC0415

    envs = [make() for _ in range(args.requests)]
    profiler = cProfile.Profile(time.process_time)
    profiler.enable()
    for env in envs:
        call(env)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.sort_stats("cumulative").print_stats(args.profile)
    stats.sort_stats("tottime").print_stats(args.profile)
    for name in args.callees or ():
        stats.print_callees(name)
    print(out.getvalue())


if __name__ == "__main__":
    raise SystemExit(main())
