"""A production-like cluster of real processes for the operations suite (tests/ops).

Everything runs as production does (docs/operators.md): `DJANGO_ENV=production`, the
required secrets in the environment, granian serving `config.wsgi:application`, and
`manage.py outbox_worker` processes, against one PostgreSQL database and Redis. All on
127.0.0.1; nothing is mocked. The services behind the cluster can be the shared ones
(PostgreSQL on 5432, a Redis database) or private ones started here, so that a test may
restart or stop them without disturbing anyone else.

Typical use (a pytest fixture would wrap it in `with`)::

    from tests.ops.cluster import Cluster, PrivatePostgres, PrivateRedis

    with Cluster(webs=2, workers=2) as cluster:            # shared PG, a private Redis
        a, b = cluster.client(0), cluster.client(1)       # HTTP clients, one per web node
        a.get("/readyz").json()
        rp = cluster.register_client("--name", "RP", "--grant", "client_credentials")
        cluster.kill_web(0)                               # SIGKILL, the whole granian group
        cluster.start_web(0)                              # again on the same port, ready
        cluster.stop_worker(1); cluster.start_worker(1)

    with PrivatePostgres() as pg, PrivateRedis() as redis:
        with Cluster(postgres=pg, redis=redis) as cluster:
            pg.restart()                                  # or pg.stop(); pg.start()
            redis.stop(); redis.start()

API
---
`Cluster(webs=2, workers=2, *, postgres=None, redis=None, redis_url=None, env=None,
worker_args=("--interval", "0.2"), web_threads=4, web_processes=1, name="ops")`
    `postgres`: a `PrivatePostgres` (default: the shared server at `OPS_POSTGRES_URL`,
    default postgres://postgres@127.0.0.1:5432). `redis`: a `PrivateRedis` the caller
    controls; `redis_url`: an existing Redis (e.g. the shared one, a database of your own);
    `redis_url=""` runs without Redis (database rate limits and sessions); neither: the
    cluster starts a private redis-server of its own (no keys left behind, nothing shared).
    `env`: extra environment variables for every process (e.g. short retry settings).
    The database, `<OPS_DB_PREFIX>_<name>_<pid>_<random>` (prefix `cum_scaleout` unless the
    environment says otherwise), is created fresh (copied from a template migrated once per
    server and test session: migrate, createcachetable, ensure_signing_keys) and dropped at
    `close()`; databases with that prefix left by a test process that no longer runs (killed
    before its teardown) are dropped when the next session makes its template.
`start()` / `close()` (or `with`): `close()` always kills every process it started and
    drops the database, even after a failure.
`urls` (list of base URLs), `url(i)`, `client(i, forwarded_for="127.0.0.1")` → `WebClient`.
`kill_web(i)` (SIGKILL of the granian master and its worker), `stop_web(i)` (SIGTERM),
    `kill_web_worker(i)` (SIGKILL of one granian worker: its master respawns it, as
    `--respawn-failed-workers` does in production), `web_worker_pids(i)`,
    `start_web(i)` (same port, waits for /readyz), `restart_web(i)`, `web_alive(i)`.
`stop_worker(i)` (SIGTERM, graceful), `kill_worker(i)` (SIGKILL), `start_worker(i)`,
    `add_worker()` → index.
`wait_ready(i, timeout=90)`: until `/readyz` answers 200 at web i (`start_web(i, wait=False)`
    does not wait).
`manage(*argv, stdin=None, check=True)` → `subprocess.CompletedProcess` (text) of
    `manage.py` in the cluster's environment; `manage_json(*argv)` → the last stdout line
    parsed as JSON. `register_client(*argv)` (`register_client --json …`) and
    `create_resident(email, password, *argv)` (`create_resident --json --verified
    --password-stdin …`) → dict. `import_residents(emails, password)`: many at once
    (`import_accounts`, one Argon2id hash).
`sql(query, params=())` → rows, on the cluster's database (psycopg, autocommit).
`env` (dict), `database_url`, `redis_url`, `tmp` (Path), `smtp` (`SmtpSink`: every email
    the workers send, `smtp.messages`), `log(name)` → the text a process wrote
    (`web0`, `worker1`, …).

`WebClient(base_url, forwarded_for)`: a `requests.Session` that sends the TLS proxy's
    headers (`X-Forwarded-Proto: https`, `X-Forwarded-For`), keeps `Secure` cookies over
    plain http, never follows redirects; `get(path, …)`, `post(path, …)`, `csrf_post(path,
    data)` (a form post with a fresh CSRF secret, as a browser would after the page),
    `sign_in(email, password)` (the real sign-in form; returns the response),
    `with_base(url)` → a client for another node sharing this one's cookies.

`PrivatePostgres(port=None)`: `initdb` (as the `postgres` user, trust auth, in a temp
    dir) and `pg_ctl` on 127.0.0.1:<free port>; `start()`, `stop(mode="fast")`,
    `restart(mode="fast")` (`"immediate"` = a crash), `url(dbname)`, `close()` removes it.
`PrivateRedis(port=None)`: `redis-server` on 127.0.0.1:<free port>, no persistence;
    `start()`, `stop()`, `url(db=0)`, `close()`.
`free_port()`, `ROOT`, `PYTHON`, `ISSUER`.

The processes' environment: `DJANGO_ENV=production`, fresh secrets (one set per test
session), `OIDC_ISSUER=https://compte.ops.test` (the `ISSUER` of client assertions, DPoP
`htu`…), `ALLOWED_HOSTS=127.0.0.1`, `BEHIND_TLS_PROXY=true` and `TRUSTED_PROXY_COUNT=1` (the
`WebClient` plays the proxy: `X-Forwarded-For` is the client address rate limits count),
`ALLOW_HTTP_LOOPBACK_REDIRECTS=true` (partners' endpoints on http://127.0.0.1), the SMTP
backend pointed at the sink, the demo and FranceConnect off. Residents' and partners' HTTP
steps (authorization code flow, introspection, revocation) are in tests/ops/flows.py.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import socketserver
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import psycopg
import requests

ROOT = Path(__file__).resolve().parents[2]
PYTHON = sys.executable
BIN = Path(PYTHON).parent
LOOPBACK = "127.0.0.1"
ISSUER = "https://compte.ops.test"
SHARED_POSTGRES_URL = os.environ.get("OPS_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432")
DB_PREFIX = os.environ.get("OPS_DB_PREFIX", "cum_scaleout")

# One set of secrets per test session: the template database's signing keys are sealed
# with KEY_ENCRYPTION_KEY, so every cluster copied from it must use the same one.
_SECRETS = {
    "SECRET_KEY": secrets.token_urlsafe(48),
    "KEY_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "CLIENT_SECRET_HMAC_KEY": secrets.token_urlsafe(32),
    "CONSENT_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "PAIRWISE_SUBJECT_KEY": secrets.token_urlsafe(32),
}


class ClusterError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _wait_port_free(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind((LOOPBACK, port))
                return
            except OSError:
                time.sleep(0.1)


def _postgres_bin(name: str) -> str:
    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise ClusterError(f"{name} not found under /usr/lib/postgresql/*/bin")
    return found[-1]


# --------------------------------------------------------------------------------------
# Private services
# --------------------------------------------------------------------------------------


class PrivatePostgres:
    """A PostgreSQL cluster of our own (initdb in a temp dir, as the `postgres` user)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cum-ops-pg-"))
        self.data = self.dir / "data"
        self.logfile = self.dir / "postgres.log"
        shutil.chown(self.dir, "postgres", "postgres")
        self._run("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync")
        self.running = False
        self.start()

    def _run(self, tool: str, *argv: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", _postgres_bin(tool), *argv],
            capture_output=True,
            text=True,
            cwd=self.dir,
        )
        if result.returncode != 0:
            raise ClusterError(f"{tool} failed: {result.stdout}\n{result.stderr}\n{self.log()}")
        return result

    def log(self) -> str:
        try:
            return self.logfile.read_text()[-3000:]
        except OSError:
            return ""

    def start(self) -> None:
        options = f"-p {self.port} -k /tmp -c listen_addresses={LOOPBACK} -c fsync=off -c max_connections=200"
        self._run(
            "pg_ctl", "-D", str(self.data), "-o", options, "-l", str(self.logfile), "-w", "-t", "60", "start"
        )
        self.running = True

    def stop(self, mode: str = "fast") -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", mode, "-w", "-t", "60", "stop")
        self.running = False

    def restart(self, mode: str = "fast") -> None:
        self.stop(mode)
        self.start()

    def url(self, dbname: str = "postgres") -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}/{dbname}"

    @property
    def server_url(self) -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}"

    def close(self) -> None:
        if self.running:
            with contextlib.suppress(ClusterError):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivatePostgres:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PrivateRedis:
    """A redis-server of our own on a free loopback port, without persistence."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="cum-ops-redis-"))
        self.process: subprocess.Popen[bytes] | None = None
        self.start()

    def start(self) -> None:
        _wait_port_free(self.port)
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                LOOPBACK,
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            cwd=self.dir,
            stdout=open(self.dir / "redis.log", "ab"),  # noqa: SIM115 - the child keeps it
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError),
                socket.create_connection((LOOPBACK, self.port), timeout=1) as sock,
            ):
                sock.sendall(b"PING\r\n")
                if sock.recv(16).startswith(b"+PONG"):
                    return
            time.sleep(0.05)
        raise ClusterError("redis-server did not start")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        self.process = None

    def url(self, db: int = 0) -> str:
        return f"redis://{LOOPBACK}:{self.port}/{db}"

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> PrivateRedis:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class SmtpSink:
    """A minimal SMTP server on loopback that accepts every message and keeps it
    (production requires a real mail backend; the workers deliver residents' emails here)."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        sink = self

        class Handler(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self.wfile.write(b"220 sink ESMTP\r\n")
                while line := self.rfile.readline():
                    verb = line[:4].upper()
                    if verb in (b"EHLO", b"HELO"):
                        self.wfile.write(b"250 sink\r\n")
                    elif verb == b"DATA":
                        self.wfile.write(b"354 go ahead\r\n")
                        body = b""
                        while (chunk := self.rfile.readline()) not in (b".\r\n", b""):
                            body += chunk
                        sink.messages.append(body)
                        self.wfile.write(b"250 queued\r\n")
                    elif verb == b"QUIT":
                        self.wfile.write(b"221 bye\r\n")
                        return
                    else:  # MAIL, RCPT, RSET, NOOP
                        self.wfile.write(b"250 ok\r\n")

        self.server = socketserver.ThreadingTCPServer((LOOPBACK, 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --------------------------------------------------------------------------------------
# HTTP client
# --------------------------------------------------------------------------------------


class WebClient(requests.Session):
    def __init__(self, base_url: str, forwarded_for: str = LOOPBACK) -> None:
        super().__init__()
        self.base_url = base_url.rstrip("/")
        self.headers.update({"X-Forwarded-Proto": "https", "X-Forwarded-For": forwarded_for})

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if isinstance(url, str) and url.startswith("/"):
            url = self.base_url + url
        kwargs.setdefault("allow_redirects", False)
        kwargs.setdefault("timeout", 30)
        response = super().request(method, url, *args, **kwargs)
        # The service sets `Secure` (__Host-) cookies: TLS ends at the proxy, which we play.
        for cookie in self.cookies:
            cookie.secure = False
        return response

    def get(self, url: str | bytes, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        kwargs.setdefault("allow_redirects", False)  # requests' own get() follows them
        return self.request("GET", url, **kwargs)

    def with_base(self, base_url: str) -> WebClient:
        other = WebClient(base_url, self.headers["X-Forwarded-For"])
        other.cookies = self.cookies
        return other

    def csrf_post(self, path: str, data: dict[str, Any], **kwargs: Any) -> requests.Response:
        """A form post with a CSRF secret of our own in the cookie and the form (what the
        page would have set): the CSRF check is the real one."""
        token = secrets.token_hex(16)
        for name in ("__Host-csrf", "csrf"):
            self.cookies.set(name, token, domain=LOOPBACK, path="/")
        headers = {"Origin": "https://" + urlsplit(self.base_url).netloc, **kwargs.pop("headers", {})}
        return self.post(path, data={**data, "csrfmiddlewaretoken": token}, headers=headers, **kwargs)

    def sign_in(self, email: str, password: str, next_url: str = "/") -> requests.Response:
        return self.csrf_post("/connexion/", {"username": email, "password": password, "next": next_url})


# --------------------------------------------------------------------------------------
# The cluster
# --------------------------------------------------------------------------------------


def _admin_params(server_url: str) -> dict[str, Any]:
    url = urlsplit(server_url)
    if url.hostname not in (LOOPBACK, "localhost"):
        raise ClusterError("the operations suite only uses a PostgreSQL server on 127.0.0.1")
    return {
        "host": url.hostname,
        "port": url.port or 5432,
        "user": url.username or "postgres",
        "password": url.password,
        "dbname": "postgres",
    }


def _drop_database(server_url: str, name: str) -> None:
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(**_admin_params(server_url), autocommit=True) as conn,
    ):
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _drop_abandoned_databases(server_url: str) -> None:
    """Databases of ours (DB_PREFIX_<name>_<pid>_<hex>) whose test process is gone."""
    with psycopg.connect(**_admin_params(server_url), autocommit=True) as conn:
        names = [
            row[0]
            for row in conn.execute(
                "SELECT datname FROM pg_database WHERE datname LIKE %s",
                (DB_PREFIX.replace("_", r"\_") + r"\_%",),
            )
        ]
    for name in names:
        parts = name[len(DB_PREFIX) + 1 :].split("_")
        if len(parts) >= 3 and parts[-2].isdigit() and not Path(f"/proc/{parts[-2]}").exists():
            _drop_database(server_url, name)


_templates: dict[str, str] = {}  # server URL -> template database migrated in this session
_template_lock = threading.RLock()


def _static_collected() -> bool:
    """collectstatic ran after the last change of a file in static/ (production serves the
    hashed names of its manifest)."""
    manifest = ROOT / "staticfiles" / "staticfiles.json"
    if not manifest.exists():
        return False
    newest = max((path.stat().st_mtime for path in (ROOT / "static").rglob("*") if path.is_file()), default=0)
    return manifest.stat().st_mtime > newest


def _copy_database(source: str, target: str) -> None:
    dump = subprocess.Popen(
        [_postgres_bin("pg_dump"), "--format=custom", "--no-owner", "--dbname", source],
        stdout=subprocess.PIPE,
    )
    restore = subprocess.run(
        [_postgres_bin("pg_restore"), "--no-owner", "--exit-on-error", "--dbname", target],
        stdin=dump.stdout,
        capture_output=True,
        text=True,
    )
    if dump.stdout is not None:
        dump.stdout.close()
    if dump.wait() != 0 or restore.returncode != 0:
        raise ClusterError(f"copying the template database failed: {restore.stderr[-2000:]}")


def _base_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OIDC_", "PYTEST_"))}
    for name in ("DATABASE_URL", "REDIS_URL", "TESTING", "CI"):
        env.pop(name, None)
    env.update(_SECRETS)
    env.update(
        {
            "DJANGO_ENV": "production",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "OIDC_ISSUER": ISSUER,
            "ALLOWED_HOSTS": LOOPBACK,
            "SECURE_SSL_REDIRECT": "false",
            "BEHIND_TLS_PROXY": "true",
            "TRUSTED_PROXY_COUNT": "1",
            # Partners of the tests listen on http://127.0.0.1:<port> (RecordingServer).
            "ALLOW_HTTP_LOOPBACK_REDIRECTS": "true",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "DEMO_ENABLED": "false",
            "FRANCECONNECT_ENABLED": "false",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


class Cluster:
    def __init__(
        self,
        webs: int = 2,
        workers: int = 2,
        *,
        postgres: PrivatePostgres | None = None,
        redis: PrivateRedis | None = None,
        redis_url: str | None = None,
        env: dict[str, str] | None = None,
        worker_args: Sequence[str] = ("--interval", "0.2"),
        web_threads: int = 4,
        web_processes: int = 1,
        name: str = "ops",
    ) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix=f"cum-{name}-"))
        self.server_url = postgres.server_url if postgres else SHARED_POSTGRES_URL.rstrip("/")
        self.db_name = f"{DB_PREFIX}_{name}_{os.getpid()}_{secrets.token_hex(4)}"
        self.database_url = f"{self.server_url}/{self.db_name}"
        self.own_redis: PrivateRedis | None = None
        if redis is None and redis_url is None:
            redis = self.own_redis = PrivateRedis()
        self.redis_url = redis.url(0) if redis is not None else (redis_url or "")
        self.smtp = SmtpSink()
        self.env = _base_env()
        self.env.update(
            {
                "DATABASE_URL": self.database_url,
                "REDIS_URL": self.redis_url,
                "VAR_DIR": str(self.tmp / "var"),
                "EMAIL_HOST": LOOPBACK,
                "EMAIL_PORT": str(self.smtp.port),
            }
        )
        self.env.update(env or {})
        self.web_count = webs
        self.worker_count = workers
        self.worker_args = list(worker_args)
        self.web_threads = web_threads
        self.web_processes = web_processes
        self.ports = [free_port() for _ in range(webs)]
        self.webs: list[subprocess.Popen[bytes] | None] = [None] * webs
        self.workers: list[subprocess.Popen[bytes] | None] = [None] * workers
        self.db_created = False
        self._logs: list[Any] = []

    # --- life cycle ---------------------------------------------------------------------
    def __enter__(self) -> Cluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        self._create_database()
        for i in range(self.web_count):
            self.start_web(i, wait=False)
        for i in range(self.worker_count):
            self.start_worker(i)
        for i in range(self.web_count):
            self.wait_ready(i)

    def close(self) -> None:
        for process in [*self.webs, *self.workers]:
            if process is not None and process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    process.wait(10)
        if self.own_redis is not None:
            self.own_redis.close()
        if self.db_created:
            _drop_database(self.server_url, self.db_name)
            self.db_created = False
        self.smtp.close()
        for handle in self._logs:
            handle.close()
        shutil.rmtree(self.tmp, ignore_errors=True)

    # --- database ---------------------------------------------------------------------
    def _template(self, server_url: str | None = None) -> str:
        """A database migrated once per server and session (migrate, createcachetable,
        ensure_signing_keys, in one process); each cluster is a copy of it (CREATE DATABASE
        … TEMPLATE). A private server gets a copy of the shared server's template
        (pg_dump | pg_restore), which costs seconds instead of a migration."""
        server_url = server_url or self.server_url
        shared = SHARED_POSTGRES_URL.rstrip("/")
        with _template_lock:
            if server_url in _templates:
                return _templates[server_url]
            source = None if server_url == shared else f"{shared}/{self._template(shared)}"
            name = f"{DB_PREFIX}_tpl_{os.getpid()}_{secrets.token_hex(3)}"
            _drop_abandoned_databases(server_url)
            with psycopg.connect(**_admin_params(server_url), autocommit=True) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            atexit.register(_drop_database, server_url, name)
            target = f"{server_url}/{name}"
            if source:
                _copy_database(source, target)
            else:
                self._prepare_database({**self.env, "DATABASE_URL": target, "REDIS_URL": ""})
            _templates[server_url] = name
            return name

    def _prepare_database(self, env: dict[str, str]) -> None:
        script = (
            "import django; django.setup()\n"
            "from django.core.management import call_command\n"
            "call_command('migrate', interactive=False, verbosity=0)\n"
            "call_command('createcachetable', verbosity=0)\n"
            "call_command('ensure_signing_keys', verbosity=0)\n"
        )
        result = subprocess.run(
            [PYTHON, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
        )
        if result.returncode != 0:
            raise ClusterError(f"preparing the database failed:\n{result.stdout}\n{result.stderr}")
        if not _static_collected():
            self._manage_with(env, ["collectstatic", "--noinput"])

    def _create_database(self) -> None:
        template = self._template()
        with psycopg.connect(**_admin_params(self.server_url), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.db_name}" TEMPLATE "{template}"')
        self.db_created = True

    def sql(self, query: str, params: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        url = urlsplit(self.database_url)
        with psycopg.connect(
            host=url.hostname, port=url.port, user=url.username, dbname=self.db_name, autocommit=True
        ) as conn:
            cursor = conn.execute(query, params)  # type: ignore[arg-type]
            return cursor.fetchall() if cursor.description else []

    # --- manage.py ------------------------------------------------------------------------
    def _manage_with(
        self, env: dict[str, str], argv: Sequence[str], stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            [PYTHON, "manage.py", *argv],
            cwd=ROOT,
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=600,
        )
        if check and result.returncode != 0:
            raise ClusterError(
                f"manage.py {' '.join(argv)} failed ({result.returncode}):\n{result.stdout}\n{result.stderr}"
            )
        return result

    def manage(
        self, *argv: str, stdin: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self._manage_with(self.env, argv, stdin, check)

    def manage_json(self, *argv: str, stdin: str | None = None) -> Any:
        out = self.manage(*argv, stdin=stdin).stdout
        return json.loads(out.strip().splitlines()[-1])

    def register_client(self, *argv: str) -> dict[str, Any]:
        return dict(self.manage_json("register_client", "--json", *argv))

    def create_resident(self, email: str, password: str, *argv: str) -> dict[str, Any]:
        return dict(
            self.manage_json(
                "create_resident",
                "--email",
                email,
                "--password-stdin",
                "--verified",
                "--json",
                *argv,
                stdin=password + "\n",
            )
        )

    def import_residents(self, emails: Iterable[str], password: str) -> None:
        """Many verified residents at once through `import_accounts` (one Argon2id hash at the
        production parameters, shared: only the orchestrator pays for it)."""
        from argon2 import PasswordHasher, Type  # noqa: PLC0415

        hashed = "argon2" + PasswordHasher(
            time_cost=2, memory_cost=19 * 1024, parallelism=1, hash_len=32, type=Type.ID
        ).hash(password)
        rows = [
            json.dumps(
                {
                    "email": email,
                    "email_verified": True,
                    "password_hash": hashed,
                    "given_name": "Camille",
                    "family_name": f"Ops {index}",
                }
            )
            for index, email in enumerate(emails)
        ]
        self.manage("import_accounts", "-", stdin="\n".join(rows) + "\n")

    # --- web processes ------------------------------------------------------------------------
    @property
    def urls(self) -> list[str]:
        return [self.url(i) for i in range(self.web_count)]

    def url(self, i: int) -> str:
        return f"http://{LOOPBACK}:{self.ports[i]}"

    def client(self, i: int, forwarded_for: str = LOOPBACK) -> WebClient:
        return WebClient(self.url(i), forwarded_for)

    def _logfile(self, name: str) -> Any:
        handle = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115 - closed at close()
        self._logs.append(handle)
        return handle

    def log(self, name: str) -> str:
        try:
            return (self.tmp / f"{name}.log").read_text(errors="replace")
        except OSError:
            return ""

    def start_web(self, i: int, wait: bool = True) -> None:
        if self.web_alive(i):
            raise ClusterError(f"web {i} is already running")
        _wait_port_free(self.ports[i])
        cmd = [
            str(BIN / "granian"),
            "--interface", "wsgi",
            "--workers", str(self.web_processes),
            "--blocking-threads", str(self.web_threads),
            "--http", "1",
            "--no-ws",
            "--host", LOOPBACK,
            "--port", str(self.ports[i]),
            "--respawn-failed-workers",  # as in production (docs/operators.md)
            "--respawn-interval", "0.5",
            "--log-level", "warning",
            "config.wsgi:application",
        ]  # fmt: skip
        env = self.env
        if self.web_processes > 1:  # prometheus_client's multiprocess mode: an empty directory per node
            metrics_dir = self.tmp / f"prometheus-web{i}"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir()
            env = {**self.env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}
        self.webs[i] = subprocess.Popen(
            cmd, cwd=ROOT, env=env, stdout=self._logfile(f"web{i}"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        if wait:
            self.wait_ready(i)

    def web_alive(self, i: int) -> bool:
        process = self.webs[i]
        return process is not None and process.poll() is None

    def wait_ready(self, i: int, timeout: float = 90) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            process = self.webs[i]
            if process is None or process.poll() is not None:
                raise ClusterError(f"web {i} exited:\n{self.log(f'web{i}')[-3000:]}")
            try:
                answer = requests.get(
                    self.url(i) + "/readyz", headers={"X-Forwarded-Proto": "https"}, timeout=5
                )
                last = answer.text
                if answer.status_code == 200:
                    return dict(answer.json())
            except requests.RequestException as exc:
                last = exc
            time.sleep(0.2)
        raise ClusterError(f"web {i} not ready ({last}):\n{self.log(f'web{i}')[-3000:]}")

    def _signal_group(self, process: subprocess.Popen[bytes] | None, signum: int) -> None:
        if process is None or process.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signum)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def kill_web(self, i: int) -> None:
        """SIGKILL the granian master and its worker at once: requests in flight die."""
        self._signal_group(self.webs[i], signal.SIGKILL)

    def web_worker_pids(self, i: int) -> list[int]:
        """The pids of web node i's granian worker processes (children of its master)."""
        process = self.webs[i]
        if process is None or process.poll() is not None:
            return []
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        return [int(pid) for pid in children]

    def kill_web_worker(self, i: int) -> int:
        """SIGKILL one granian worker of web node i (its master respawns it); returns its pid.
        `wait_ready(i)` then waits for the new worker."""
        pids = self.web_worker_pids(i)
        if not pids:
            raise ClusterError(f"web {i} has no worker process")
        os.kill(pids[0], signal.SIGKILL)
        return pids[0]

    def stop_web(self, i: int) -> None:
        self._signal_group(self.webs[i], signal.SIGTERM)

    def restart_web(self, i: int) -> None:
        self.kill_web(i)
        self.start_web(i)

    # --- outbox workers -------------------------------------------------------------------------
    def start_worker(self, i: int) -> None:
        if self.workers[i] is not None and self.workers[i].poll() is None:  # type: ignore[union-attr]
            raise ClusterError(f"worker {i} is already running")
        self.workers[i] = subprocess.Popen(
            [PYTHON, "manage.py", "outbox_worker", *self.worker_args],
            cwd=ROOT, env=self.env, stdout=self._logfile(f"worker{i}"), stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def add_worker(self) -> int:
        self.workers.append(None)
        self.worker_count += 1
        self.start_worker(self.worker_count - 1)
        return self.worker_count - 1

    def stop_worker(self, i: int) -> None:
        """SIGTERM: the worker finishes its batch and removes its heartbeat."""
        self._signal_group(self.workers[i], signal.SIGTERM)

    def kill_worker(self, i: int) -> None:
        self._signal_group(self.workers[i], signal.SIGKILL)
