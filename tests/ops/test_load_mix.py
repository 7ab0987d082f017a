"""The load generator reports what goes wrong (tests/ops/load_mix.py), against a real socket.

A server that answers 500 is counted as server errors, one that answers something the flow
does not expect as errors, and nothing is acknowledged: the load test's "zero 5xx, zero
unexpected answers" cannot pass by not looking. Quick, no database: part of the default run.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.ops.load_mix import MixConfig, run_mix


def serve(status: int, body: bytes) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length", 0))
            self.rfile.read(length)
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = _answer

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def failing_server() -> Iterator[str]:
    yield from serve(500, b"Internal Server Error")


@pytest.fixture
def wrong_server() -> Iterator[str]:
    yield from serve(200, b"<html>no sign-in form here</html>")


def config(base_url: str) -> MixConfig:
    return MixConfig(
        base_urls=[base_url],
        residents=["a@ops.example", "b@ops.example"],
        password="irrelevant",
        code_client_id="c",
        code_client_secret="s",
        widget_client_id="w",
        cookie_purposes=["personalisation-browsing"],
        duration=0.5,
        timeout=5,
    )


def test_server_errors_are_counted_as_such(failing_server: str) -> None:
    result = asyncio.run(run_mix(config(failing_server)))
    assert result.server_errors["signin"] >= 2
    assert not result.errors
    assert not result.acknowledged
    assert any("HTTP 500" in sample for sample in result.samples)
    assert "| signin | 0 |" in result.table()


def test_unexpected_answers_are_counted_as_errors(wrong_server: str) -> None:
    result = asyncio.run(run_mix(config(wrong_server)))
    assert result.errors["signin"] >= 2
    assert not result.server_errors
    assert not result.acknowledged
    assert any("no CSRF field" in sample for sample in result.samples)
