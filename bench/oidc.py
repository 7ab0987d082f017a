"""Benchmark of the OIDC hot paths, with the service running as in production.

    .venv/bin/python bench/oidc.py [--duration 10] \
        [--database-url postgres://postgres@127.0.0.1:5432/cum_bench] \
        [--redis-url redis://127.0.0.1:6379/5]

What it does (see bench/README.md, section "OIDC hot paths"):

1. Recreates a throwaway PostgreSQL database (its name must contain "bench"), runs
   `migrate` and `ensure_signing_keys`, registers the clients with `register_client --json`
   and a resident with `create_resident --json`, all under DJANGO_ENV=production.
2. Starts the WSGI server as in production (docs/operators.md: granian, `--server gunicorn`
   for a comparison with gunicorn gthread): one worker pinned to CPU core 0 (`taskset -c 0`),
   keep-alive, on 127.0.0.1:<free port>; waits for /readyz.
3. Signs the resident in through the real login form (one Argon2id check), then loads each
   operation from CPU core 1 (`taskset -c 1`) over keep-alive HTTP on loopback: `wrk` with
   small Lua scripts for the stateless calls, a small asyncio load generator (this file,
   `--loadgen`) for the chained ones (refresh rotation, authorize -> code -> token).
4. Prints a Markdown table (req/s, p50, p99, target, errors) and stops everything it
   started, also on Ctrl-C and on errors. Exit status 2 when any request failed.

`--profile DIR` additionally runs `py-spy record` on the server's worker during each
measured phase and writes collapsed stacks plus a hotspot summary into DIR.

Traffic only ever goes to 127.0.0.1. The issuer (https://bench.example) is a string.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import contextlib
import datetime as dt
import hashlib
import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlencode, urlsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent  # the virtualenv's bin/ (granian, gunicorn, py-spy)
LOOPBACK = "127.0.0.1"
ISSUER = "https://bench.example"
REDIRECT_URI = "https://rp.bench.example/callback"

# Targets per core, from issue 4 ("Speed").
OPERATIONS: list[tuple[str, str, int]] = [
    # Not in issue 4: the floor of the stack (WSGI server + Django middleware, no database).
    ("healthz", "(reference) GET /healthz, no database", 0),
    ("discovery", "discovery + JWKS (GET, alternating)", 3000),
    ("client_credentials", "client-credentials grant (POST /token)", 1000),
    ("introspection", "introspection (POST /introspect)", 1500),
    ("userinfo", "userinfo (GET /userinfo, bearer)", 1500),
    ("refresh", "refresh with rotation (POST /token)", 500),
    ("auth_code", "auth-code round trip (authorize → code → token)", 300),
    # Issue 14: Argon2id (m=19 MiB, t=2, p=1) is the cost; ≥ 40 sign-ins/s per core.
    ("signin", "password sign-in (GET /connexion/ → POST → session)", 40),
]

# Workloads W1–W6 of issue 14 ("Speed"): node-oidc-provider v9's figures (SQLite store) and
# the issue's targets, both in operations per CPU-second of the server; `--reference node`
# measures node-oidc-provider in the same run and prints ours as a share of it.
ISSUE14: dict[str, tuple[str, int, int]] = {
    "client_credentials": ("W1", 5300, 4000),
    "introspection": ("W2", 5300, 4000),
    "userinfo": ("W3", 6200, 4500),
    "refresh": ("W4", 1180, 850),
    "auth_code": ("W5", 700, 500),
    "discovery": ("W6", 9700, 7000),
}

# The endpoints the load is sent to. Read from each provider's discovery document at set-up
# (`endpoint_paths`); the well-known path and the health probes are not in it.
DISCOVERY_PATH = "/.well-known/openid-configuration"
DISCOVERED = {
    "authorize": "authorization_endpoint",
    "token": "token_endpoint",
    "userinfo": "userinfo_endpoint",
    "introspect": "introspection_endpoint",
    "jwks": "jwks_uri",
}


def endpoint_paths(discovery: dict[str, Any]) -> dict[str, str]:
    """The loaded paths of a provider, from its discovery document.

    Only the path is kept: ours writes its endpoints under the issuer, node-oidc-provider
    under the origin the request reached (here the loopback address).
    """
    paths = {"discovery": DISCOVERY_PATH, "healthz": "/healthz", "readyz": "/readyz"}
    for name, key in DISCOVERED.items():
        url = discovery.get(key)
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme not in ("http", "https") or not parts.netloc or parts.query:
            raise BenchError(f"discovery: {key} {url!r} is not an absolute URL without a query")
        paths[name] = parts.path
    return paths


# Residents for the sign-in load: one per connection at least, so that no account sees
# concurrent sign-ins (the limits count failures only; a failure is a benchmark error).
SIGNIN_RESIDENTS = 16


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


class BenchError(RuntimeError):
    pass


# --------------------------------------------------------------------------------------
# A minimal HTTP/1.1 keep-alive client (asyncio), used for setup and for the chained
# load generators. http.client would do, but this one costs less CPU per request on the
# load-generator core, which keeps the measurement about the server.
# --------------------------------------------------------------------------------------


class Response:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def header(self, name: str) -> str | None:
        name = name.lower()
        for key, value in self.headers:
            if key == name:
                return value
        return None

    def cookies(self) -> dict[str, str]:
        jar = {}
        for key, value in self.headers:
            if key == "set-cookie":
                pair = value.split(";", 1)[0]
                cname, _, cvalue = pair.partition("=")
                jar[cname.strip()] = cvalue.strip()
        return jar

    def json(self) -> Any:
        return json.loads(self.body)


class Connection:
    """One persistent connection; reopened transparently if the server closed it."""

    def __init__(self, port: int, base_headers: dict[str, str]) -> None:
        self.port = port
        self.base = "".join(f"{k}: {v}\r\n" for k, v in base_headers.items())
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.reconnects = -1

    async def _open(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(LOOPBACK, self.port)
        sock = self.writer.get_extra_info("socket")
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.reconnects += 1

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            with contextlib.suppress(Exception):
                await self.writer.wait_closed()
        self.reader = self.writer = None

    async def request(
        self, method: str, path: str, headers: dict[str, str] | None = None, body: bytes = b""
    ) -> Response:
        if self.writer is None:
            await self._open()
        head = f"{method} {path} HTTP/1.1\r\nHost: {LOOPBACK}:{self.port}\r\n{self.base}"
        for key, value in (headers or {}).items():
            head += f"{key}: {value}\r\n"
        if body or method == "POST":
            head += f"Content-Length: {len(body)}\r\n"
        assert self.writer is not None and self.reader is not None
        self.writer.write(head.encode("latin-1") + b"\r\n" + body)
        status_line = await self.reader.readline()
        if not status_line:
            # Closed by the server between requests (keep-alive timeout): retry once.
            await self.close()
            await self._open()
            assert self.writer is not None and self.reader is not None
            self.writer.write(head.encode("latin-1") + b"\r\n" + body)
            status_line = await self.reader.readline()
        status = int(status_line.split(b" ", 2)[1])
        response_headers: list[tuple[str, str]] = []
        while True:
            line = await self.reader.readline()
            if line in (b"\r\n", b"\n", b""):
                break
            key, _, value = line.decode("latin-1").partition(":")
            response_headers.append((key.strip().lower(), value.strip()))
        hdr = dict(response_headers)
        if "content-length" in hdr:
            data = await self.reader.readexactly(int(hdr["content-length"]))
        elif hdr.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self.reader.readline()).split(b";")[0], 16)
                if size == 0:
                    await self.reader.readline()
                    break
                chunks.append(await self.reader.readexactly(size))
                await self.reader.readline()
            data = b"".join(chunks)
        else:
            data = await self.reader.read()
            await self.close()
        if hdr.get("connection", "").lower() == "close":
            await self.close()
        return Response(status, response_headers, data)


def basic_auth(client_id: str, secret: str) -> str:
    raw = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
    return "Basic " + base64.b64encode(raw).decode()


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


FORM = "application/x-www-form-urlencoded"


def proxy_headers() -> dict[str, str]:
    # The TLS-terminating proxy the service expects in production.
    return {"X-Forwarded-Proto": "https", "X-Forwarded-For": LOOPBACK}


def authorize_path(spec: dict[str, Any], challenge: str, state: str) -> str:
    """The authorization request of W5 (code flow, PKCE S256) at the provider's endpoint."""
    query = urlencode(
        {
            "response_type": "code",
            "client_id": spec["code_client_id"],
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email",
            "state": state,
            "nonce": secrets.token_urlsafe(12),
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        }
    )
    return spec["paths"]["authorize"] + "?" + query


async def auth_code_round_trip(
    conn: Connection, spec: dict[str, Any], timings: list[float] | None = None
) -> dict[str, Any]:
    """authorize (signed-in session, PKCE) -> code -> token. Raises BenchError on failure."""
    verifier, challenge = pkce_pair()
    state = secrets.token_urlsafe(12)
    t0 = time.perf_counter()
    authz = await conn.request(
        "GET", authorize_path(spec, challenge, state), {"Cookie": spec["session_cookie"]}
    )
    t1 = time.perf_counter()
    location = authz.header("location") or ""
    if authz.status not in (302, 303) or not location.startswith(REDIRECT_URI):
        raise BenchError(
            f"authorize: HTTP {authz.status} location={location[:120]!r} body={authz.body[:200]!r}"
        )
    params = parse_qs(urlsplit(location).query)
    if params.get("state") != [state] or "code" not in params:
        raise BenchError(f"authorize: no code in redirect {location[:160]!r}")
    body = urlencode(
        {
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": REDIRECT_URI,
            "code_verifier": verifier,
        }
    ).encode()
    token = await conn.request(
        "POST",
        spec["paths"]["token"],
        {"Authorization": spec["code_client_basic"], "Content-Type": FORM},
        body,
    )
    t2 = time.perf_counter()
    if token.status != 200:
        raise BenchError(f"token (authorization_code): HTTP {token.status} {token.body[:200]!r}")
    data = token.json()
    if not data.get("access_token") or not data.get("id_token") or not data.get("refresh_token"):
        raise BenchError(f"token (authorization_code): incomplete answer keys={sorted(data)}")
    if timings is not None:
        timings.extend((t1 - t0, t2 - t1))
    return data


_CSRF_FIELD = re.compile(rb'name="csrfmiddlewaretoken" value="([^"]+)"')


async def sign_in(
    conn: Connection,
    port: int,
    email: str,
    password: str,
    device: dict[str, str],
    timings: list[float] | None = None,
) -> str:
    """A returning resident whose session ended: GET the form, POST it. Returns the session cookie.

    The browser holds only its known-device cookie (`device`, updated from each answer, as a
    browser would): the form's GET sets the CSRF cookie and its token is read from the page.
    """
    t0 = time.perf_counter()
    jar = dict(device)
    page = await conn.request(
        "GET", "/connexion/?next=/", {"Cookie": "; ".join(f"{k}={v}" for k, v in jar.items())} if jar else {}
    )
    t1 = time.perf_counter()
    token = _CSRF_FIELD.search(page.body)
    if page.status != 200 or token is None:
        raise BenchError(f"sign-in form: HTTP {page.status} {page.body[:200]!r}")
    jar.update(page.cookies())
    answer = await conn.request(
        "POST",
        "/connexion/",
        {
            "Cookie": "; ".join(f"{k}={v}" for k, v in jar.items()),
            "Origin": f"https://{LOOPBACK}:{port}",
            "Content-Type": FORM,
        },
        urlencode(
            {
                "username": email,
                "password": password,
                "csrfmiddlewaretoken": token.group(1).decode(),
                "next": "/",
            }
        ).encode(),
    )
    t2 = time.perf_counter()
    cookies = answer.cookies()
    session = {k: v for k, v in cookies.items() if "session" in k}
    if answer.status != 302 or not session:
        raise BenchError(f"sign-in: HTTP {answer.status} cookies={sorted(cookies)} {answer.body[:200]!r}")
    device.update({k: v for k, v in cookies.items() if "known_device" in k})
    if timings is not None:
        timings.extend((t1 - t0, t2 - t1))
    return "; ".join(f"{k}={v}" for k, v in session.items())


async def refresh_once(conn: Connection, spec: dict[str, Any], refresh_token: str) -> str:
    body = urlencode({"grant_type": "refresh_token", "refresh_token": refresh_token}).encode()
    response = await conn.request(
        "POST",
        spec["paths"]["token"],
        {"Authorization": spec["code_client_basic"], "Content-Type": FORM},
        body,
    )
    if response.status != 200:
        raise BenchError(f"refresh: HTTP {response.status} {response.body[:200]!r}")
    new = response.json().get("refresh_token")
    if not new or new == refresh_token:
        raise BenchError("refresh: the refresh token was not rotated")
    return new


# --------------------------------------------------------------------------------------
# Chained load generator (runs as its own process on core 1: `--loadgen SPEC.json`)
# --------------------------------------------------------------------------------------


async def _loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    kind = spec["kind"]
    port = spec["port"]
    warmup_end = time.perf_counter() + spec["warmup"]
    end = warmup_end + spec["duration"]
    latencies: list[float] = []
    steps: list[float] = []
    total = [0]
    errors: collections.Counter[str] = collections.Counter()
    samples: list[str] = []

    def record_error(exc: Exception) -> None:
        text = str(exc)
        errors[text.split(":", 1)[0]] += 1
        if len(samples) < 5:
            samples.append(text[:300])

    async def user(index: int) -> None:
        conn = Connection(port, proxy_headers())
        refresh_token = spec["refresh_tokens"][index] if kind == "refresh" else ""
        operation = _round_trip(kind, conn, spec, index)
        try:
            while True:
                start = time.perf_counter()
                if start >= end:
                    break
                measuring = start >= warmup_end
                try:
                    if kind == "refresh":
                        refresh_token = await refresh_once(conn, spec, refresh_token)
                    else:
                        await operation(steps if measuring else None)
                except (BenchError, ValueError, OSError, asyncio.IncompleteReadError) as exc:
                    if measuring:
                        record_error(exc)
                    await conn.close()
                    if kind == "refresh":
                        # The chain is broken (we do not know whether the server rotated):
                        # start a new family, outside the measurement.
                        try:
                            refresh_token = (await auth_code_round_trip(conn, spec))["refresh_token"]
                        except Exception as exc2:
                            record_error(exc2)
                            return
                    continue
                total[0] += 1
                if measuring:
                    latencies.append(time.perf_counter() - start)
        finally:
            await conn.close()

    measured_start = warmup_end
    await asyncio.gather(*(user(i) for i in range(spec["connections"])))
    elapsed = max(time.perf_counter(), end) - measured_start
    latencies.sort()

    def pct(values: list[float], p: float) -> float:
        if not values:
            return float("nan")
        return values[min(len(values) - 1, round(p / 100 * (len(values) - 1)))] * 1000

    result: dict[str, Any] = {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": pct(latencies, 50),
        "p99_ms": pct(latencies, 99),
        "errors": sum(errors.values()),
        "error_kinds": dict(errors),
        "error_samples": samples,
        "total_requests": total[0],  # operations, warm-up included (for CPU per operation)
    }
    result.update(_step_split(kind, steps, pct))
    return result


def _round_trip(kind: str, conn: Connection, spec: dict[str, Any], index: int) -> Any:
    """The two-request operation of one load-generator connection: auth code or sign-in."""
    if kind == "signin":
        # Each connection is one resident's browser (its known-device cookie kept across runs).
        email = spec["residents"][index % len(spec["residents"])]["email"]
        device: dict[str, str] = {}

        async def signin(timings: list[float] | None) -> None:
            await sign_in(conn, spec["port"], email, spec["signin_password"], device, timings)

        return signin

    async def auth_code(timings: list[float] | None) -> None:
        await auth_code_round_trip(conn, spec, timings)

    return auth_code


def _step_split(kind: str, steps: list[float], pct: Any) -> dict[str, Any]:
    """p50/p99 of each request of a two-request operation (auth code, sign-in)."""
    names = {"auth_code": ("authorize", "token"), "signin": ("form", "post")}.get(kind)
    if not names or not steps:
        return {}
    first, second = sorted(steps[0::2]), sorted(steps[1::2])
    return {
        "steps": {
            f"{names[0]}_p50_ms": pct(first, 50),
            f"{names[0]}_p99_ms": pct(first, 99),
            f"{names[1]}_p50_ms": pct(second, 50),
            f"{names[1]}_p99_ms": pct(second, 99),
        }
    }


def loadgen_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = asyncio.run(_loadgen(spec))
    print("BENCHJSON " + json.dumps(result), flush=True)


# --------------------------------------------------------------------------------------
# wrk scripts
# --------------------------------------------------------------------------------------

WRK_COMMON = r"""
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end
function init(args)
  bad = 0
  sample = ""
end
function response(status, headers, body)
  if status ~= EXPECT_STATUS or (NEEDLE ~= nil and not string.find(body, NEEDLE, 1, true)) then
    bad = bad + 1
    if sample == "" then sample = tostring(status) .. " " .. string.sub(body or "", 1, 160) end
  end
end
function done(summary, latency, requests)
  local total_bad = 0
  local first = ""
  for _, t in ipairs(threads) do
    total_bad = total_bad + t:get("bad")
    local s = t:get("sample")
    if first == "" and s ~= nil then first = s end
  end
  first = string.gsub(first, '[%c"\\]', " ")
  io.write(string.format(
    'BENCHJSON {"requests":%d,"duration_us":%d,"p50_us":%d,"p99_us":%d,"bad":%d,' ..
    '"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d,"sample":"%s"}\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99), total_bad,
    summary.errors.connect, summary.errors.read, summary.errors.write, summary.errors.status,
    summary.errors.timeout, first))
end
"""


def lua_string(value: str) -> str:
    return json.dumps(value)  # a JSON string literal is a valid Lua string literal here


def wrk_script(
    *,
    method: str,
    headers: dict[str, str],
    body: str | None = None,
    needle: str | None = None,
    alternate: list[str] | None = None,
) -> str:
    lines = [f"wrk.method = {lua_string(method)}"]
    for key, value in {**proxy_headers(), **headers}.items():
        lines.append(f"wrk.headers[{lua_string(key)}] = {lua_string(value)}")
    if body is not None:
        lines.append(f"wrk.body = {lua_string(body)}")
    lines.append("EXPECT_STATUS = 200")
    lines.append(f"NEEDLE = {lua_string(needle) if needle else 'nil'}")
    script = "\n".join(lines) + "\n" + WRK_COMMON
    if alternate:
        paths = ", ".join(lua_string(p) for p in alternate)
        script += f"""
local paths = {{{paths}}}
local counter = 0
function request()
  counter = counter + 1
  return wrk.format(nil, paths[(counter % #paths) + 1])
end
"""
    return script


# --------------------------------------------------------------------------------------
# The orchestrator
# --------------------------------------------------------------------------------------


# What a request to the service carries behind the proxy, for the in-process clients.
IN_PROCESS_REQUEST = {
    "HTTP_X_FORWARDED_PROTO": "https",
    "HTTP_X_FORWARDED_FOR": "127.0.0.1",
    "SERVER_NAME": "127.0.0.1",
}


def in_process_clients(runner: Bench) -> tuple[Any, Any]:
    """Two django.test.Clients as the benchmark's requests arrive behind the proxy (HTTPS,
    the forwarded address): a browser signed in as the benchmark's resident through
    /connexion/, and one for the partners' back-end calls. For the in-process benchmarks
    (bench/oidc_profile.py, bench/kept_cursor_ab.py, bench/bearer_inproc.py); needs Django set up."""
    from django.test import Client  # noqa: PLC0415

    browser = Client(**IN_PROCESS_REQUEST)
    response = browser.post(
        "/connexion/", {"username": runner.resident_email, "password": runner.resident_password, "next": "/"}
    )
    assert response.status_code == 302, response.status_code
    return browser, Client(**IN_PROCESS_REQUEST)


def in_process_code_round_trip(browser: Any, api: Any, client: dict[str, Any]) -> dict[str, Any]:
    """W5 in process (django.test.Client): GET /authorize with the signed-in `browser`, PKCE
    S256, then POST /token by the client with `api`; the token response. For
    bench/oidc_profile.py and bench/at_scale.py."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    r = browser.get(
        "/authorize",
        {
            "response_type": "code",
            "client_id": client["client_id"],
            "redirect_uri": REDIRECT_URI,
            "scope": "openid profile email",
            "state": "s",
            "nonce": "n",
            "code_challenge": challenge,
            "code_challenge_method": "S256",
        },
    )
    if r.status_code == 200 and b'name="pending"' in r.content:
        # An internal service's information page, shown once: press "Continuer".
        found = re.search(rb'name="pending" value="([^"]+)"', r.content)
        assert found is not None
        r = browser.post("/authorize/information", {"pending": found.group(1).decode()})
    assert r.status_code in (302, 303), (r.status_code, r.content[:200])
    got = parse_qs(urlsplit(r["Location"]).query)["code"][0]
    t = api.post(
        "/token",
        urlencode(
            {
                "grant_type": "authorization_code",
                "code": got,
                "redirect_uri": REDIRECT_URI,
                "code_verifier": verifier,
            }
        ),
        content_type=FORM,
        HTTP_AUTHORIZATION=basic_auth(client["client_id"], client["client_secret"]),
    )
    assert t.status_code == 200, t.content[:200]
    return t.json()


# The environment entries a prepared database's rows depend on (what signed and sealed them).
IN_PROCESS_SECRETS = (
    "SECRET_KEY",
    "KEY_ENCRYPTION_KEY",
    "CLIENT_SECRET_HMAC_KEY",
    "CONSENT_MASTER_KEY",
    "PAIRWISE_SUBJECT_KEY",
)


def in_process_main(
    parser: argparse.ArgumentParser,
    *,
    database_url: str,
    redis_url: str,
    body: Callable[[Bench, argparse.Namespace], int],
) -> int:
    """An in-process script's main: the script's own arguments (`parser`) plus the database,
    Redis and `--state` ones, then `run_in_process` with `body(runner, args)`."""
    parser.add_argument("--database-url", default=database_url)
    parser.add_argument("--redis-url", default=redis_url)
    parser.add_argument(
        "--state",
        type=Path,
        help="keep the prepared database and its secrets in this JSON file, and reuse them when it "
        "exists (so alternate runs skip the preparation; drop the database by hand afterwards)",
    )
    args = parser.parse_args()
    return run_in_process(
        database_url=args.database_url,
        redis_url=args.redis_url,
        state=args.state,
        body=lambda runner: body(runner, args),
    )


def run_in_process(
    *, database_url: str, redis_url: str, state: Path | None, body: Callable[[Bench], int]
) -> int:
    """Prepare the benchmark's database (or, when the `state` JSON file exists, reuse the one
    an earlier run prepared and kept, with its secrets, clients and resident), put its
    environment in os.environ, then `body(runner)`; the database is dropped at the end unless
    `state` is given. For bench/bearer_inproc.py and bench/authorize_inproc.py, whose alternate
    runs from two trees share one prepared database."""
    runner = Bench.for_in_process(database_url=database_url, redis_url=redis_url, keep_db=state is not None)
    try:
        if state is not None and state.exists():
            kept = json.loads(state.read_text())
            runner.env.update(kept["env"])
            runner.clients, runner.resident_email = kept["clients"], kept["email"]
            runner.resident_password = kept["password"]
        else:
            runner.prepare()
            if state is not None:
                kept = {
                    "env": {name: runner.env[name] for name in IN_PROCESS_SECRETS},
                    "clients": runner.clients,
                    "email": runner.resident_email,
                    "password": runner.resident_password,
                }
                state.write_text(json.dumps(kept))
        os.environ.update(runner.env)
        return body(runner)
    finally:
        runner.stop()


class Bench:
    # An active token's introspection answer contains this (JSON as each provider writes it).
    active_needle = '"active": true'
    # Issue 14's target for one web worker's resident memory (ours only).
    memory_target_mib: int | None = 150

    @classmethod
    def for_in_process(cls, *, database_url: str, redis_url: str, keep_db: bool = False) -> Bench:
        """A Bench that only prepares the database and the environment (setup, step 1), for
        the scripts that then drive Django in process (bench/oidc_profile.py, bench/at_scale.py)."""
        return cls(
            argparse.Namespace(
                database_url=database_url,
                redis_url=redis_url,
                keep_db=keep_db,
                keep_tmp=False,
                threads=1,
                connections=1,
                server="granian",
                id_token_alg="RS256",
                server_args="",
                profile=None,
                profile_gil=False,
                duration=0,
                warmup=0,
            )
        )

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.tmp = Path(tempfile.mkdtemp(prefix="cum-bench-"))
        self.children: list[subprocess.Popen] = []
        self.server: subprocess.Popen | None = None
        self.port = 0
        self.env = self._service_env()
        self.db_created = False
        self.clients: dict[str, dict[str, Any]] = {}
        self.session_cookie = ""
        self.results: dict[str, dict[str, Any]] = {}
        # Until the discovery document is read (start_service): the probes only.
        self.paths: dict[str, str] = {"readyz": "/readyz", "discovery": DISCOVERY_PATH}
        self.server_name: str = args.server

    # --- environment --------------------------------------------------------------------
    def _service_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OIDC_"))}
        env.update(
            {
                "DJANGO_ENV": "production",
                "DJANGO_SETTINGS_MODULE": "config.settings",
                "SECRET_KEY": secrets.token_urlsafe(48),
                "KEY_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "CLIENT_SECRET_HMAC_KEY": secrets.token_urlsafe(32),
                "CONSENT_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
                "PAIRWISE_SUBJECT_KEY": secrets.token_urlsafe(32),
                "OIDC_ISSUER": ISSUER,
                "ALLOWED_HOSTS": LOOPBACK,
                "SECURE_SSL_REDIRECT": "false",
                "BEHIND_TLS_PROXY": "true",
                "TRUSTED_PROXY_COUNT": "1",
                # Production names a real mail backend; the benchmark sends no email.
                "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
                "EMAIL_HOST": "127.0.0.1",
                "DATABASE_URL": self.args.database_url,
                "REDIS_URL": self.args.redis_url,
                "DEMO_ENABLED": "false",
                "VAR_DIR": str(self.tmp / "var"),
                "PYTHONUNBUFFERED": "1",
                "PYTHONDONTWRITEBYTECODE": "1",
            }
        )
        return env

    # --- database and registrations --------------------------------------------------------
    def _db_name(self) -> tuple[str, dict[str, Any]]:
        url = urlsplit(self.args.database_url)
        if url.scheme not in ("postgres", "postgresql"):
            raise BenchError("--database-url must be a postgres:// URL")
        if url.hostname not in ("127.0.0.1", "localhost", "::1"):
            raise BenchError("the benchmark database must be on this machine (127.0.0.1)")
        name = url.path.lstrip("/")
        if "bench" not in name:
            raise BenchError(
                f"refusing to drop and recreate database {name!r}: its name must contain 'bench'"
            )
        params = {
            "host": url.hostname,
            "port": url.port or 5432,
            "user": url.username or "postgres",
            "password": url.password,
            "dbname": "postgres",
        }
        return name, params

    def recreate_database(self) -> None:
        name, params = self._db_name()
        with psycopg.connect(**params, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            conn.execute(f'CREATE DATABASE "{name}"')
        self.db_created = True
        log(f"database {name} recreated")

    def drop_database(self) -> None:
        if not self.db_created or self.args.keep_db:
            return
        name, params = self._db_name()
        try:
            with psycopg.connect(**params, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        except Exception as exc:
            log(f"could not drop database {name}: {exc}")

    def manage(self, *argv: str, stdin: str | None = None) -> str:
        result = subprocess.run(
            [PYTHON, "manage.py", *argv],
            cwd=ROOT,
            env=self.env,
            input=stdin,
            capture_output=True,
            text=True,
        )
        if result.returncode != 0:
            raise BenchError(f"manage.py {argv[0]} failed:\n{result.stdout}\n{result.stderr}")
        return result.stdout

    def prepare(self) -> None:
        self.recreate_database()
        self.manage("migrate", "--noinput")
        self.manage("collectstatic", "--noinput")  # the information page is a rendered page
        self.manage("ensure_signing_keys")
        log("migrated, signing keys created")

        def register(key: str, *argv: str) -> None:
            out = self.manage("register_client", "--json", *argv)
            self.clients[key] = json.loads(out.strip().splitlines()[-1])

        register("cc", "--name", "Bench machine client", "--grant", "client_credentials")
        # Also a resource server: introspection describes a token to its own client (or to a
        # resource server named in its aud, RFC 7662 §4), so the bench introspects its tokens.
        register(
            "code",
            "--name",
            "Bench internal service",
            "--internal",
            "--resource-server",
            "--grant",
            "authorization_code",
            "--redirect-uri",
            REDIRECT_URI,
            "--scope",
            "openid",
            "--scope",
            "profile",
            "--scope",
            "email",
            "--signing-alg",
            self.args.id_token_alg,
        )
        self.resident_email = f"resident-{secrets.token_hex(4)}@bench.example"
        self.resident_password = "Bench-" + secrets.token_urlsafe(18)
        self.manage(
            "create_resident",
            "--email",
            self.resident_email,
            "--password-stdin",
            "--given-name",
            "Camille",
            "--family-name",
            "Banc",
            "--verified",
            "--json",
            stdin=self.resident_password + "\n",
        )
        log("clients registered (client_credentials, internal auth-code + introspection), resident created")
        self.import_signin_residents()

    def import_signin_residents(self) -> None:
        """Residents for the sign-in load, through the project's `import_accounts` (one process).

        Their hashes are Argon2id at the production parameters (m=19 MiB, t=2, p=1, Django's
        `argon2$argon2id$…` form), so no re-hash happens at sign-in; each has its own salt.
        """
        from argon2 import PasswordHasher, Type  # noqa: PLC0415 - only the orchestrator needs it

        hasher = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, type=Type.ID)
        self.signin_password = "Bench-" + secrets.token_urlsafe(18)
        self.signin_residents = []
        rows = []
        for index in range(SIGNIN_RESIDENTS):
            email = f"signin-{index}-{secrets.token_hex(3)}@bench.example"
            self.signin_residents.append({"email": email})
            rows.append(
                json.dumps(
                    {
                        "email": email,
                        "email_verified": True,
                        "password_hash": "argon2" + hasher.hash(self.signin_password),
                        "given_name": "Dominique",
                        "family_name": f"Banc {index}",
                    }
                )
            )
        self.manage("import_accounts", "-", stdin="\n".join(rows) + "\n")
        log(f"{SIGNIN_RESIDENTS} residents imported for the sign-in load (Argon2id m=19 MiB, t=2, p=1)")

    # --- the service ----------------------------------------------------------------------------
    def start_service(self) -> None:
        with socket.socket() as sock:
            sock.bind((LOOPBACK, 0))
            self.port = sock.getsockname()[1]
        cmd = self._server_command()
        self.server_log = open(self.tmp / "server.log", "w")  # noqa: SIM115
        self.server = subprocess.Popen(
            cmd,
            cwd=ROOT,
            env=self.env,
            stdout=self.server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.time() + 60
        while time.time() < deadline:
            if self.server.poll() is not None:
                raise BenchError(
                    f"{self.server_name} exited:\n" + (self.tmp / "server.log").read_text()[-3000:]
                )
            try:
                status = asyncio.run(self._get_status(self.paths["readyz"]))
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.2)
        else:
            raise BenchError(
                f"{self.server_name} did not become ready:\n" + (self.tmp / "server.log").read_text()[-3000:]
            )
        self.worker_pid = self._worker_pid()
        self.memory_at_start = self._worker_memory()
        self.paths = endpoint_paths(asyncio.run(self._get_json(DISCOVERY_PATH)))
        log(
            f"{self.server_name} ready on {LOOPBACK}:{self.port} "
            f"(master {self.server.pid}, worker {self.worker_pid}, "
            f"{self.args.threads} threads, core 0); paths from discovery: "
            + ", ".join(f"{k} {v}" for k, v in self.paths.items() if k in DISCOVERED)
        )

    def _server_command(self) -> list[str]:
        if self.args.server == "granian":
            cmd = [
                "taskset",
                "-c",
                "0",
                str(BIN / "granian"),
                "--interface",
                "wsgi",
                "--workers",
                "1",
                "--blocking-threads",
                str(self.args.threads),
                "--http",
                "1",
                "--no-ws",
                "--host",
                LOOPBACK,
                "--port",
                str(self.port),
                "--log-level",
                "warning",
                "config.wsgi:application",
            ]
        else:
            cmd = [
                "taskset",
                "-c",
                "0",
                str(BIN / "gunicorn"),
                "config.wsgi",
                "--workers",
                "1",
                "--worker-class",
                "gthread",
                "--threads",
                str(self.args.threads),
                "--keep-alive",
                "75",
                "--bind",
                f"{LOOPBACK}:{self.port}",
                "--worker-tmp-dir",
                "/dev/shm",
                "--no-control-socket",
                "--graceful-timeout",
                "5",
                "--error-logfile",
                "-",
            ]
        if self.args.server_args:
            cmd += self.args.server_args.split()
        return cmd

    def _worker_pid(self) -> int:
        assert self.server is not None
        for _ in range(50):
            children = Path(f"/proc/{self.server.pid}/task/{self.server.pid}/children").read_text().split()
            if children:
                return int(children[0])
            time.sleep(0.1)
        raise BenchError(f"no {self.args.server} worker process found")

    def _worker_memory(self) -> dict[str, int]:
        """The worker's resident memory now (VmRSS) and its peak (VmHWM), in KiB, from /proc."""
        memory = {}
        for line in Path(f"/proc/{self.worker_pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                memory[key] = int(value.split()[0])
        return memory

    async def _get_status(self, path: str) -> int:
        conn = Connection(self.port, proxy_headers())
        try:
            return (await conn.request("GET", path)).status
        finally:
            await conn.close()

    async def _get_json(self, path: str) -> Any:
        conn = Connection(self.port, proxy_headers())
        try:
            response = await conn.request("GET", path)
        finally:
            await conn.close()
        if response.status != 200:
            raise BenchError(f"GET {path}: HTTP {response.status} {response.body[:200]!r}")
        return response.json()

    # --- sign-in and tokens (setup, not measured) --------------------------------------------
    async def _login(self) -> str:
        """Sign in through the real login form; returns the Cookie header of the session.

        The CSRF cookie is a fresh random secret (what Django would have set when rendering
        the form), so no template needs to be rendered before posting it.
        """
        csrf = secrets.token_hex(16)  # 32 characters, Django's unmasked CSRF secret length
        cookie_names = ("__Host-csrf", "csrf")
        conn = Connection(self.port, proxy_headers())
        try:
            response = await conn.request(
                "POST",
                "/connexion/",
                {
                    "Cookie": "; ".join(f"{n}={csrf}" for n in cookie_names),
                    "Origin": f"https://{LOOPBACK}:{self.port}",
                    "Content-Type": FORM,
                },
                urlencode(
                    {
                        "username": self.resident_email,
                        "password": self.resident_password,
                        "csrfmiddlewaretoken": csrf,
                        "next": "/",
                    }
                ).encode(),
            )
        finally:
            await conn.close()
        jar = response.cookies()
        session = {k: v for k, v in jar.items() if "session" in k}
        if response.status != 302 or not session:
            raise BenchError(
                f"login failed: HTTP {response.status} cookies={sorted(jar)} {response.body[:300]!r}"
            )
        return "; ".join(f"{k}={v}" for k, v in session.items())

    def spec(self) -> dict[str, Any]:
        code = self.clients["code"]
        return {
            "port": self.port,
            "session_cookie": self.session_cookie,
            "code_client_id": code["client_id"],
            "code_client_basic": basic_auth(code["client_id"], code["client_secret"]),
            "paths": self.paths,
        }

    async def _acknowledge_internal_notice(self) -> None:
        """The first visit to an internal service shows its information page, once.

        As a resident would, press "Continuer" (a CSRF-protected POST) so that the measured
        round trips are those of a returning resident (identity/oidc/internal_notice.py).
        """
        _verifier, challenge = pkce_pair()
        query = urlencode(
            {
                "response_type": "code",
                "client_id": self.clients["code"]["client_id"],
                "redirect_uri": REDIRECT_URI,
                "scope": "openid profile email",
                "state": "notice",
                "code_challenge": challenge,
                "code_challenge_method": "S256",
            }
        )
        conn = Connection(self.port, proxy_headers())
        try:
            page = await conn.request(
                "GET", self.paths["authorize"] + "?" + query, {"Cookie": self.session_cookie}
            )
            if page.status in (302, 303):
                return  # no page: already acknowledged
            found = re.search(rb'name="pending" value="([^"]+)"', page.body)
            if page.status != 200 or not found:
                raise BenchError(f"information page: HTTP {page.status} {page.body[:200]!r}")
            csrf = secrets.token_hex(16)
            cookies = "; ".join(f"{name}={csrf}" for name in ("__Host-csrf", "csrf"))
            answer = await conn.request(
                "POST",
                "/authorize/information",
                {
                    "Cookie": f"{self.session_cookie}; {cookies}",
                    "Origin": f"https://{LOOPBACK}:{self.port}",
                    "Content-Type": FORM,
                },
                urlencode({"pending": found.group(1).decode(), "csrfmiddlewaretoken": csrf}).encode(),
            )
        finally:
            await conn.close()
        if answer.status not in (302, 303) or not (answer.header("location") or "").startswith(REDIRECT_URI):
            raise BenchError(f"information page: POST answered HTTP {answer.status} {answer.body[:200]!r}")
        log("internal service's information page acknowledged once")

    async def _user_tokens(self, count: int) -> list[dict[str, Any]]:
        conn = Connection(self.port, proxy_headers())
        try:
            return [await auth_code_round_trip(conn, self.spec()) for _ in range(count)]
        finally:
            await conn.close()

    async def _client_credentials_token(self) -> str:
        cc = self.clients["cc"]
        conn = Connection(self.port, proxy_headers())
        try:
            response = await conn.request(
                "POST",
                self.paths["token"],
                {"Authorization": basic_auth(cc["client_id"], cc["client_secret"]), "Content-Type": FORM},
                b"grant_type=client_credentials",
            )
        finally:
            await conn.close()
        if response.status != 200:
            raise BenchError(f"client_credentials: HTTP {response.status} {response.body[:200]!r}")
        return response.json()["access_token"]

    # --- load ----------------------------------------------------------------------------------
    def _profiler(self, name: str) -> subprocess.Popen | None:
        if not self.args.profile:
            return None
        pyspy = shutil.which("py-spy") or str(BIN / "py-spy")
        out = Path(self.args.profile) / f"{name}.txt"
        proc = subprocess.Popen(
            [
                "taskset",
                "-c",
                "1",
                pyspy,
                "record",
                "--pid",
                str(self.worker_pid),
                "--duration",
                str(int(self.args.duration)),
                "--rate",
                "250",
                "--format",
                "raw",
                "--nonblocking",
                "--output",
                str(out),
                *(["--gil"] if self.args.profile_gil else []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self.children.append(proc)
        return proc

    def _cpu_sample(self) -> tuple[float, float, float]:
        """(wall s, worker CPU s, core-0 busy s): to tell server cost from machine noise."""
        tick = os.sysconf("SC_CLK_TCK")
        fields = Path(f"/proc/{self.worker_pid}/stat").read_text().rsplit(")", 1)[1].split()
        worker = (int(fields[11]) + int(fields[12])) / tick
        core0 = 0.0
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("cpu0 "):
                values = [int(v) for v in line.split()[1:]]
                core0 = (sum(values) - values[3] - values[4]) / tick  # minus idle and iowait
                break
        return time.monotonic(), worker, core0

    def _run_child(self, cmd: list[str], name: str) -> dict[str, Any]:
        before = self._cpu_sample()
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.children.append(proc)
        profiler = None
        if self.args.profile:
            time.sleep(self.args.warmup)
            profiler = self._profiler(name)
        out, err = proc.communicate()
        after = self._cpu_sample()
        if profiler is not None:
            profiler.wait(timeout=self.args.duration + 30)
        self.children.remove(proc)
        for line in out.splitlines():
            if line.startswith("BENCHJSON "):
                result = json.loads(line[len("BENCHJSON ") :])
                wall, worker, core0 = (a - b for a, b in zip(after, before, strict=True))
                result["cpu"] = {
                    "wall_s": wall,
                    "worker_cpu_s": worker,
                    "core0_busy_s": core0,
                    "load1": float(Path("/proc/loadavg").read_text().split()[0]),
                }
                return result
        raise BenchError(f"{name}: load generator gave no result (exit {proc.returncode}):\n{out}\n{err}")

    def run_wrk(self, name: str, path: str, script: str) -> dict[str, Any]:
        script_path = self.tmp / f"{name}.lua"
        script_path.write_text(script)
        url = f"http://{LOOPBACK}:{self.port}{path}"
        if self.args.warmup > 0 and not self.args.profile:
            subprocess.run(
                [
                    "taskset",
                    "-c",
                    "1",
                    "wrk",
                    "-t1",
                    f"-c{self.args.connections}",
                    f"-d{max(1, int(self.args.warmup))}s",
                    "-s",
                    str(script_path),
                    url,
                ],
                capture_output=True,
                check=False,
            )
        extra_warm = int(self.args.warmup) if self.args.profile else 0
        cmd = [
            "taskset",
            "-c",
            "1",
            "wrk",
            "-t1",
            f"-c{self.args.connections}",
            f"-d{int(self.args.duration) + extra_warm}s",
            "--timeout",
            "10s",
            "-s",
            str(script_path),
            url,
        ]
        raw = self._run_child(cmd, name)
        seconds = raw["duration_us"] / 1e6
        errors = raw["bad"] + raw["connect"] + raw["read"] + raw["write"] + raw["timeout"]
        result = {
            "requests": raw["requests"],
            "rps": raw["requests"] / seconds,
            "p50_ms": raw["p50_us"] / 1000,
            "p99_ms": raw["p99_us"] / 1000,
            "errors": errors,
            "error_kinds": {k: raw[k] for k in ("bad", "connect", "read", "write", "timeout") if raw[k]},
            "error_samples": [raw["sample"]] if raw["sample"] else [],
            "total_requests": raw["requests"],
            "cpu": raw["cpu"],
        }
        return result

    def run_loadgen(self, kind: str, extra: dict[str, Any]) -> dict[str, Any]:
        spec = {
            **self.spec(),
            **extra,
            "kind": kind,
            "duration": self.args.duration,
            "warmup": self.args.warmup,
            "connections": self.args.connections,
        }
        spec_path = self.tmp / f"{kind}.json"
        spec_path.write_text(json.dumps(spec))
        spec_path.chmod(0o600)
        cmd = ["taskset", "-c", "1", PYTHON, str(Path(__file__).resolve()), "--loadgen", str(spec_path)]
        return self._run_child(cmd, kind)

    def measure(self, name: str) -> dict[str, Any]:
        cc, rs = self.clients["cc"], self.clients["code"]  # "code" introspects its own tokens
        paths = self.paths
        if name == "healthz":
            return self.run_wrk(name, paths["healthz"], wrk_script(method="GET", headers={}, needle='"ok"'))
        if name == "discovery":
            script = wrk_script(method="GET", headers={}, alternate=[paths["discovery"], paths["jwks"]])
            return self.run_wrk(name, paths["discovery"], script)
        if name == "client_credentials":
            script = wrk_script(
                method="POST",
                headers={
                    "Authorization": basic_auth(cc["client_id"], cc["client_secret"]),
                    "Content-Type": FORM,
                },
                body="grant_type=client_credentials",
                needle='"access_token"',
            )
            return self.run_wrk(name, paths["token"], script)
        if name == "introspection":
            token = asyncio.run(self._user_tokens(1))[0]["access_token"]
            script = wrk_script(
                method="POST",
                headers={
                    "Authorization": basic_auth(rs["client_id"], rs["client_secret"]),
                    "Content-Type": FORM,
                },
                body=urlencode({"token": token, "token_type_hint": "access_token"}),
                needle=self.active_needle,
            )
            return self.run_wrk(name, paths["introspect"], script)
        if name == "userinfo":
            token = asyncio.run(self._user_tokens(1))[0]["access_token"]
            script = wrk_script(method="GET", headers={"Authorization": f"Bearer {token}"}, needle='"sub"')
            return self.run_wrk(name, paths["userinfo"], script)
        if name == "refresh":
            tokens = asyncio.run(self._user_tokens(self.args.connections))
            return self.run_loadgen("refresh", {"refresh_tokens": [t["refresh_token"] for t in tokens]})
        if name == "auth_code":
            return self.run_loadgen("auth_code", {})
        if name == "signin":
            return self.run_loadgen(
                "signin", {"residents": self.signin_residents, "signin_password": self.signin_password}
            )
        raise BenchError(f"unknown operation {name}")

    # --- the whole run ---------------------------------------------------------------------------
    def run(self) -> int:
        started = dt.datetime.now(dt.UTC)
        self.prepare()
        self.start_service()
        self.session_cookie = asyncio.run(self._login())
        log("resident signed in through /connexion/ (session cookie obtained)")
        asyncio.run(self._acknowledge_internal_notice())
        # Sanity check of every path once before loading it.
        asyncio.run(self._user_tokens(1))
        asyncio.run(self._client_credentials_token())
        if self.args.profile:
            Path(self.args.profile).mkdir(parents=True, exist_ok=True)
        selected = self.operations()
        for name, label, _target in selected:
            log(
                f"{label}: {self.args.warmup:g} s warm-up + {self.args.duration:g} s measured, "
                f"{self.args.connections} keep-alive connections"
            )
            result = self.measure(name)
            self.results[name] = result
            log(
                f"  -> {result['rps']:.0f} req/s, p50 {result['p50_ms']:.2f} ms, "
                f"p99 {result['p99_ms']:.2f} ms, errors {result['errors']}"
            )
            if result["errors"]:
                log(
                    f"  !!! {result['errors']} ERRORS in {name}: "
                    f"{result['error_kinds']} {result['error_samples']}"
                )
        self.memory_at_end = self._worker_memory()
        self.report(started, selected)
        if self.args.profile:
            summarize_profiles(Path(self.args.profile))
        return 2 if any(r["errors"] for r in self.results.values()) else 0

    def server_description(self) -> str:
        return f"{self.args.server}, 1 worker x {self.args.threads} threads"

    def operations(self) -> list[tuple[str, str, int]]:
        return [op for op in OPERATIONS if not self.args.only or op[0] in self.args.only]

    def report(self, started: dt.datetime, selected: list[tuple[str, str, int]]) -> None:
        cpu = "unknown CPU"
        with contextlib.suppress(OSError):
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
        rev = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True, check=False
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
        print()
        print(
            f"Run {started:%Y-%m-%d %H:%M} UTC, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}, commit {rev}{' + uncommitted changes' if dirty else ''}; "
            f"{self.server_description()} on core 0, {self.args.id_token_alg} ID tokens, load on core 1, "
            f"{self.args.connections} keep-alive connections, "
            f"{self.args.duration:g} s per operation after {self.args.warmup:g} s warm-up."
        )
        print()
        print("| operation | req/s | p50 ms | p99 ms | target req/s | errors |")
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        missed = []
        for name, label, target in selected:
            r = self.results[name]
            mark = "" if r["rps"] >= target else " ✗"
            if mark:
                missed.append(label)
            errors = f"**{r['errors']}**" if r["errors"] else "0"
            goal = f"≥ {target:,}{mark}" if target else "—"
            print(
                f"| {label} | {r['rps']:,.0f} | {r['p50_ms']:.1f} | {r['p99_ms']:.1f} | {goal} | {errors} |"
            )
        print()
        if "auth_code" in self.results and "steps" in self.results["auth_code"]:
            s = self.results["auth_code"]["steps"]
            print(
                f"Auth-code round trip split: authorize p50 {s['authorize_p50_ms']:.1f} ms "
                f"(p99 {s['authorize_p99_ms']:.1f}), "
                f"token p50 {s['token_p50_ms']:.1f} ms (p99 {s['token_p99_ms']:.1f})."
            )
        if "signin" in self.results and "steps" in self.results["signin"]:
            s = self.results["signin"]["steps"]
            print(
                f"Sign-in split: GET /connexion/ p50 {s['form_p50_ms']:.1f} ms (p99 {s['form_p99_ms']:.1f}), "
                f"POST p50 {s['post_p50_ms']:.1f} ms (p99 {s['post_p99_ms']:.1f})."
            )
        if missed:
            print(f"Targets missed (✗): {', '.join(missed)}.")
        print()
        print("Server cost, independent of machine noise (worker CPU from /proc, warm-up included):")
        print()
        print(
            "| operation | worker CPU ms/op | ceiling op/s on one free core "
            "| worker CPU use | core 0 busy | load avg |"
        )
        print("| --- | ---: | ---: | ---: | ---: | ---: |")
        for name, label, _target in selected:
            r = self.results[name]
            cpu = r.get("cpu")
            per_op = cpu_ms_per_op(r)
            if cpu is None or per_op is None:
                continue
            print(
                f"| {label} | {per_op:.2f} | {1000 / per_op:,.0f} "
                f"| {100 * cpu['worker_cpu_s'] / cpu['wall_s']:.0f}% "
                f"| {100 * cpu['core0_busy_s'] / cpu['wall_s']:.0f}% | {cpu['load1']:.1f} |"
            )
        print()
        print(
            "The ceiling excludes PostgreSQL and Redis time (other processes); the worker's share of core 0 "
            "below ~95% means it waited (database round trips, or other processes on core 0)."
        )
        start, end = self.memory_at_start, self.memory_at_end
        target = self.memory_target_mib
        print()
        print(
            f"Worker memory (/proc/{self.worker_pid}/status): "
            f"VmRSS {start['VmRSS'] / 1024:.1f} MiB when ready, "
            f"{end['VmRSS'] / 1024:.1f} MiB after the benchmark (peak VmHWM {end['VmHWM'] / 1024:.1f} MiB)"
            + (f"; target ≤ {target} MiB{'' if end['VmRSS'] <= target * 1024 else ' ✗'}." if target else ".")
        )
        errors = {n: r for n, r in self.results.items() if r["errors"]}
        if errors:
            print()
            print("**ERRORS** (non-2xx or unexpected answers):")
            for name, r in errors.items():
                print(f"- {name}: {r['errors']} {r['error_kinds']} e.g. {r['error_samples'][:2]}")
        sys.stdout.flush()

    # --- teardown ----------------------------------------------------------------------------------
    def stop(self) -> None:
        # A second Ctrl-C must not leave a server or the database behind.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for proc in list(self.children):
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(timeout=5)
                if proc.poll() is None:
                    proc.kill()
        if self.server is not None and self.server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.server.pid, signal.SIGTERM)
            try:
                self.server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.server.pid, signal.SIGKILL)
                self.server.wait(timeout=5)
            log(f"{self.server_name} stopped")
        self.drop_database()
        if self.args.keep_tmp:
            log(f"kept {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)


def cpu_ms_per_op(result: dict[str, Any]) -> float | None:
    """Worker CPU milliseconds per operation (from /proc, warm-up included), as reported."""
    cpu = result.get("cpu")
    if not cpu or not result.get("total_requests"):
        return None
    return 1000 * cpu["worker_cpu_s"] / result["total_requests"]


# --------------------------------------------------------------------------------------
# The reference: node-oidc-provider v9 with an SQLite store (bench/reference_node/)
# --------------------------------------------------------------------------------------

NODE_DIR = ROOT / "bench" / "reference_node"


class NodeBench(Bench):
    """The same workloads against node-oidc-provider (`--reference node`).

    One node process (bench/reference_node/server.js) pinned to core 0, its store an SQLite
    file (WAL) in the run's temp dir; the same clients as ours (client_secret_basic; the
    auth-code client with PKCE S256, its exact redirect URI, refresh tokens rotated, ID
    tokens in --id-token-alg) and one resident account. Its CPU is that of the one process
    (SQLite runs inside it; ours leaves PostgreSQL's to PostgreSQL).
    """

    active_needle = '"active":true'
    memory_target_mib = None

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(args)
        self.server_name = "node-oidc-provider"
        package = json.loads((NODE_DIR / "node_modules" / "oidc-provider" / "package.json").read_text())
        self.node_version = subprocess.run(
            ["node", "--version"], capture_output=True, text=True, check=True
        ).stdout.strip()
        self.provider_version = package["version"]
        self.env["NODE_ENV"] = "production"

    def server_description(self) -> str:
        version = f"{self.provider_version} (node {self.node_version}"
        return f"node-oidc-provider {version}, one process, SQLite WAL)"

    def operations(self) -> list[tuple[str, str, int]]:
        # No password form: the resident's session is set up once (see _login).
        return [op for op in super().operations() if op[0] != "signin"]

    def prepare(self) -> None:
        def client() -> dict[str, str]:
            return {"client_id": "bench-" + secrets.token_hex(8), "client_secret": secrets.token_urlsafe(32)}

        self.clients = {"cc": client(), "code": client()}
        self.config_path = self.tmp / "reference_node.json"
        self.config = {
            "issuer": ISSUER,
            "sqlite": str(self.tmp / "oidc.sqlite3"),
            "account": {
                "sub": secrets.token_hex(16),
                "email": f"resident-{secrets.token_hex(4)}@bench.example",
                "email_verified": True,
                "given_name": "Camille",
                "family_name": "Banc",
            },
            "clients": [
                {
                    **self.clients["cc"],
                    "grant_types": ["client_credentials"],
                    "response_types": [],
                    "redirect_uris": [],
                    "token_endpoint_auth_method": "client_secret_basic",
                },
                {
                    **self.clients["code"],
                    "grant_types": ["authorization_code", "refresh_token"],
                    "response_types": ["code"],
                    "redirect_uris": [REDIRECT_URI],
                    "scope": "openid profile email",
                    "token_endpoint_auth_method": "client_secret_basic",
                    "id_token_signed_response_alg": self.args.id_token_alg,
                },
            ],
        }
        log(f"node-oidc-provider {self.provider_version}: clients and account written to {self.config_path}")

    def _server_command(self) -> list[str]:
        self.config["port"] = self.port
        self.config_path.write_text(json.dumps(self.config))
        self.config_path.chmod(0o600)
        return ["taskset", "-c", "0", "node", str(NODE_DIR / "server.js"), str(self.config_path)]

    def _worker_pid(self) -> int:
        assert self.server is not None
        return self.server.pid  # taskset execs node: one process

    async def _login(self) -> str:
        """One authorization request through login and consent (the server's set-up
        interaction route), following redirects; returns the browser session's cookies."""
        _verifier, challenge = pkce_pair()
        path = authorize_path(self.spec(), challenge, "setup")
        jar: dict[str, str] = {}
        conn = Connection(self.port, proxy_headers())
        try:
            for _ in range(10):
                cookie = "; ".join(f"{k}={v}" for k, v in jar.items() if v)
                response = await conn.request("GET", path, {"Cookie": cookie} if cookie else {})
                jar.update(response.cookies())
                location = response.header("location") or ""
                if response.status not in (302, 303) or not location:
                    raise BenchError(f"set-up sign-in: HTTP {response.status} {response.body[:200]!r}")
                if location.startswith(REDIRECT_URI):
                    break
                target = urlsplit(location)
                path = target.path + (f"?{target.query}" if target.query else "")
            else:
                raise BenchError("set-up sign-in: too many redirects")
        finally:
            await conn.close()
        session = {k: v for k, v in jar.items() if k.startswith("_session") and v}
        if not session:
            raise BenchError(f"set-up sign-in: no session cookie (cookies {sorted(jar)})")
        return "; ".join(f"{k}={v}" for k, v in session.items())

    async def _acknowledge_internal_notice(self) -> None:
        return None  # ours only (an internal service's information page)


def compare(ours: Bench, reference: Bench) -> None:
    """Both columns of the same run: worker CPU ms/op and op per CPU-second, ours as a % of node's."""
    print()
    print(
        "Side by side (same run, same VM, same load generator; worker CPU from /proc, warm-up "
        f"included; load average {load_range(ours)} then {load_range(reference)}):"
    )
    print()
    print(
        "| workload | ours ms/op | ours op/CPU-s | node-oidc-provider ms/op | node op/CPU-s "
        "| ours / node | issue 14's target / node's figure |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, label, _target in ours.operations():
        if name not in reference.results:
            continue
        a, b = cpu_ms_per_op(ours.results[name]), cpu_ms_per_op(reference.results[name])
        if a is None or b is None:
            continue
        workload, node_figure, target = ISSUE14.get(name, ("", 0, 0))
        goal = f"{target:,}/{node_figure:,} = {100 * target / node_figure:.0f} %" if target else "—"
        print(
            f"| {workload + ' ' if workload else ''}{label} | {a:.3f} | {1000 / a:,.0f} | {b:.3f} "
            f"| {1000 / b:,.0f} | {100 * b / a:.0f} % | {goal} |"
        )
    sys.stdout.flush()


def load_range(bench: Bench) -> str:
    loads = [r["cpu"]["load1"] for r in bench.results.values() if r.get("cpu")]
    return f"{min(loads):.1f}–{max(loads):.1f}" if loads else "n/a"


# --------------------------------------------------------------------------------------
# Profile summary (py-spy --format raw: "frame;frame;... count" per line)
# --------------------------------------------------------------------------------------

_FRAME = re.compile(r"^(?P<func>.*?) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def _short(frame: str) -> str:
    match = _FRAME.match(frame.strip())
    if not match:
        return frame.strip()
    path = match["file"]
    for marker in ("site-packages/", "/lib/python3.11/", str(ROOT) + "/"):
        if marker in path:
            path = path.split(marker, 1)[1]
            break
    return f"{path}:{match['func']}"


def summarize_profiles(directory: Path, top: int = 25) -> None:
    lines_out = []
    for path in sorted(directory.glob("*.txt")):
        if path.name.endswith(".summary.txt"):
            continue
        inclusive: collections.Counter[str] = collections.Counter()
        leaf: collections.Counter[str] = collections.Counter()
        total = 0
        for line in path.read_text().splitlines():
            stack, _, count_text = line.rpartition(" ")
            if not stack or not count_text.isdigit():
                continue
            count = int(count_text)
            frames = [_short(f) for f in stack.split(";")]
            # Keep only request-handling stacks (a gthread worker thread handling a request).
            if not any("handle_request" in f or "get_response" in f for f in frames):
                continue
            total += count
            for frame in set(frames):
                inclusive[frame] += count
            leaf[frames[-1]] += count
        if not total:
            continue
        out = [
            f"## {path.stem}: {total} samples in request handling",
            "",
            "inclusive (share of request time):",
        ]
        for frame, count in inclusive.most_common(top * 3):
            out.append(f"  {100 * count / total:5.1f}%  {frame}")
        out += ["", "self (leaf frames):"]
        for frame, count in leaf.most_common(top):
            out.append(f"  {100 * count / total:5.1f}%  {frame}")
        out.append("")
        text = "\n".join(out)
        (directory / f"{path.stem}.summary.txt").write_text(text)
        lines_out.append(text)
    if lines_out:
        log(f"profile summaries written to {directory}/*.summary.txt")


# --------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--duration", type=float, default=10, help="measured seconds per operation (default 10)"
    )
    parser.add_argument("--warmup", type=float, default=2, help="unmeasured seconds before each (default 2)")
    parser.add_argument(
        "--database-url",
        default="postgres://postgres@127.0.0.1:5432/cum_bench",
        help="throwaway PostgreSQL database, DROPPED and recreated (name must contain 'bench')",
    )
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/5")
    parser.add_argument(
        "--threads",
        type=int,
        default=4,
        help="threads of the one worker (granian blocking / gunicorn gthread; default 4)",
    )
    parser.add_argument(
        "--connections", type=int, default=8, help="concurrent keep-alive connections (default 8)"
    )
    parser.add_argument(
        "--only", nargs="*", choices=[op[0] for op in OPERATIONS], help="run only these operations"
    )
    parser.add_argument(
        "--server",
        choices=("granian", "gunicorn"),
        default="granian",
        help="WSGI server: granian (production, docs/operators.md) or gunicorn gthread (comparison)",
    )
    parser.add_argument("--server-args", default="", help="extra command-line flags for the server")
    parser.add_argument(
        "--id-token-alg",
        choices=("RS256", "ES256"),
        default="RS256",
        help="ID-token algorithm of the auth-code client (RS256: partners older than the ES256 default)",
    )
    parser.add_argument(
        "--profile", metavar="DIR", help="py-spy the worker during each operation; stacks to DIR"
    )
    parser.add_argument(
        "--profile-gil",
        action="store_true",
        help="with --profile: sample only the thread holding the GIL (CPU spent in Python), "
        "instead of wall time (which includes waiting for PostgreSQL)",
    )
    parser.add_argument(
        "--summarize", metavar="DIR", help="only print hotspot summaries of an earlier --profile DIR"
    )
    parser.add_argument(
        "--reference",
        choices=("node",),
        help="then run the same workloads against node-oidc-provider v9 with an SQLite store "
        "(bench/reference_node/, `npm ci` there first) and print both columns side by side",
    )
    parser.add_argument(
        "--reference-only", action="store_true", help="with --reference: run only the reference"
    )
    parser.add_argument("--keep-db", action="store_true", help="do not drop the database at the end")
    parser.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (Lua scripts, server log)")
    parser.add_argument("--loadgen", metavar="SPEC", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.loadgen:
        loadgen_main(args.loadgen)
        return 0
    if args.summarize:
        summarize_profiles(Path(args.summarize))
        for path in sorted(Path(args.summarize).glob("*.summary.txt")):
            print(path.read_text())
        return 0
    for tool in ("taskset", "wrk"):
        if shutil.which(tool) is None:
            hint = " (apt-get install wrk)" if tool == "wrk" else ""
            print(f"bench: {tool} is required{hint}", file=sys.stderr)
            return 1
    if (os.cpu_count() or 1) < 2:
        print("bench: needs at least 2 CPU cores (service on core 0, load on core 1)", file=sys.stderr)
        return 1

    if args.reference and not (NODE_DIR / "node_modules" / "oidc-provider").is_dir():
        print(f"bench: run `npm ci` in {NODE_DIR} first (bench/README.md)", file=sys.stderr)
        return 1

    def on_term(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    # Our own handler for both (asyncio.run leaves a non-default SIGINT handler alone), so
    # that Ctrl-C or a TERM anywhere, setup included, ends in the same clean-up.
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    kinds: list[type[Bench]] = [] if args.reference_only else [Bench]
    if args.reference:
        kinds.append(NodeBench)
    done: list[Bench] = []
    status = 0
    for kind in kinds:
        bench = kind(args)
        try:
            status = max(status, bench.run())
            done.append(bench)
        except KeyboardInterrupt:
            log("interrupted; stopping everything")
            return 130
        except BenchError as exc:
            log(f"FAILED: {exc}")
            server_log = bench.tmp / "server.log"
            if server_log.exists():
                log("last lines of the server log:\n" + "\n".join(server_log.read_text().splitlines()[-40:]))
            return 1
        finally:
            bench.stop()
            signal.signal(signal.SIGTERM, on_term)
            signal.signal(signal.SIGINT, on_term)
    if len(done) == 2:
        compare(*done)
    return status


if __name__ == "__main__":
    sys.exit(main())
