"""Hostile bodies against the production server on a real socket (issue 16, "bounded memory"):
granian as docs/operators.md starts it, DJANGO_ENV=production, one worker. Multi-megabyte
bodies (announced, chunked without Content-Length) are refused 413 and a slowly sent body is
read within its limit, while the worker's resident memory (VmRSS in /proc/<pid>/status) stays
within a bound far below the bytes sent; headers beyond granian's HTTP/1 buffer get its 431."""

from __future__ import annotations

import base64
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
MIB = 1024 * 1024
# What the worker may grow by while receiving the bodies below (about 1 GiB in all): a server
# that buffered one of them would exceed it many times over.
GROWTH_BOUND_MIB = 40


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _env(tmp: Path) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OIDC_", "DATABASE_", "REDIS_"))
    }
    env.update(
        {
            "DJANGO_ENV": "production",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "KEY_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "CONSENT_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "CLIENT_SECRET_HMAC_KEY": secrets.token_urlsafe(32),
            "PAIRWISE_SUBJECT_KEY": secrets.token_urlsafe(32),
            "OIDC_ISSUER": "https://127.0.0.1",
            "ALLOWED_HOSTS": "127.0.0.1",
            "SECURE_SSL_REDIRECT": "false",
            "BEHIND_TLS_PROXY": "true",
            "TRUSTED_PROXY_COUNT": "1",
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": "127.0.0.1",
            "DEMO_ENABLED": "false",
            "VAR_DIR": str(tmp / "var"),
            "DATABASE_URL": f"sqlite:///{tmp / 'db.sqlite3'}",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env


def _request(port: int, head: str, body: Iterable[bytes] = (), pause: float = 0.0) -> bytes:
    """Send a request (its body piece by piece, `pause` seconds apart), return the answer's head."""
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sock.sendall(head.encode())
        try:
            for piece in body:
                sock.sendall(piece)
                if pause:
                    time.sleep(pause)
        except OSError:  # the server answered and closed before the body ended: fine
            pass
        answer = b""
        while b"\r\n\r\n" not in answer:
            data = sock.recv(65536)
            if not data:
                break
            answer += data
        return answer


def _head(path: str, content_type: str, **headers: str) -> str:
    lines = [f"POST {path} HTTP/1.1", "Host: 127.0.0.1", "X-Forwarded-Proto: https", "Connection: close"]
    lines += [f"Content-Type: {content_type}"] + [
        f"{name.replace('_', '-')}: {v}" for name, v in headers.items()
    ]
    return "\r\n".join(lines) + "\r\n\r\n"


def _status(answer: bytes) -> int:
    return int(answer.split(b" ", 2)[1])


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, int]]:
    tmp = tmp_path_factory.mktemp("hostile-server")
    env = _env(tmp)
    for command in (["migrate", "-v0"], ["createcachetable"], ["ensure_signing_keys"]):
        subprocess.run(
            [sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True, capture_output=True
        )
    port = _free_port()
    log = (tmp / "server.log").open("w")
    process = subprocess.Popen(
        [
            *(str(BIN / "granian"), "--interface", "wsgi", "--workers", "1", "--blocking-threads", "4"),
            *("--http", "1", "--no-ws", "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"),
            "config.wsgi:application",
        ],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        worker = 0
        while time.monotonic() < deadline:
            assert process.poll() is None, (tmp / "server.log").read_text()[-3000:]
            children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
            if children:
                worker = int(children[0])
                try:
                    if _status(_request(port, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")) == 200:
                        break
                except OSError:
                    pass
            time.sleep(0.2)
        else:
            pytest.fail("granian did not start:\n" + (tmp / "server.log").read_text()[-3000:])
        yield port, worker
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


def _pieces(total: int, size: int = MIB) -> Iterator[bytes]:
    block = b"a" * size
    for _ in range(total // size):
        yield block


def _chunked_pieces(total: int, size: int = MIB) -> Iterator[bytes]:
    block = f"{size:x}\r\n".encode() + b"a" * size + b"\r\n"
    for _ in range(total // size):
        yield block
    yield b"0\r\n\r\n"


FORM = "application/x-www-form-urlencoded"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_multi_megabyte_and_slow_bodies_leave_the_workers_memory_bounded(server: tuple[int, int]) -> None:
    port, worker = server
    # Warm up the paths measured below (imports, first responses), then measure.
    for _ in range(3):
        _request(port, _head("/token", FORM, Content_Length="10"), iter([b"grant_type"]))
        _request(port, _head("/token", FORM, Content_Length=str(64 * MIB)), _pieces(MIB))
    before = _rss_mib(worker)

    statuses = []
    for path, content_type in (("/token", FORM), ("/consent/api/v1/cookie/choices", "application/json")):
        for _ in range(4):
            # Announced: 64 MiB sent behind a Content-Length of 64 MiB.
            answer = _request(
                port, _head(path, content_type, Content_Length=str(64 * MIB)), _pieces(64 * MIB)
            )
            statuses.append(_status(answer))
            # Chunked, no Content-Length: 64 MiB.
            answer = _request(
                port, _head(path, content_type, Transfer_Encoding="chunked"), _chunked_pieces(64 * MIB)
            )
            statuses.append(_status(answer))
    assert set(statuses) == {413}, statuses

    # Slowly sent bodies within the limit (2 MiB in 64 KiB pieces), several at once: each is
    # read and answered (the token endpoint refuses the unknown grant), none is kept.
    slow: list[int] = []

    def send_slowly() -> None:
        head = _head("/token", FORM, Content_Length=str(2 * MIB))
        slow.append(_status(_request(port, head, _pieces(2 * MIB, 64 * 1024), pause=0.05)))

    threads = [threading.Thread(target=send_slowly) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert slow == [400] * 4, slow

    after = _rss_mib(worker)
    assert after - before < GROWTH_BOUND_MIB, (before, after)


def test_headers_beyond_the_servers_buffer_get_431(server: tuple[int, int]) -> None:
    port, _worker = server
    huge_cookie = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nCookie: a=" + "b" * 600_000 + "\r\n\r\n"
    assert _status(_request(port, huge_cookie)) == 431
    many = "".join(f"X-Noise-{i}: v\r\n" for i in range(5_000))
    assert _status(_request(port, f"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n{many}\r\n")) == 431
    long_query = "GET /healthz?" + "a=1&" * 150_000 + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert _status(_request(port, long_query)) == 431
