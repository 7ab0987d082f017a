"""The shared part of the partners' HTTP simulators (connectors.transport_simulator,
connectors.ticketing_simulator): a real HTTP server (http.server, threads) on 127.0.0.1 that
can be stopped (the partner is down) and started again on the same port, a handler base
that sends JSON and RFC 7807 problems, checks the API key, reads JSON bodies and plays the
faults tests switch on (`Faults.mode`: slow, garbage, error), and the counts of requests and
of effects per idempotency key. No Django inside.

A simulator subclasses `SimulatorHandler` (its `do_GET`/`do_POST`) and `HttpSimulator` (its
state: a `SimulatorState` subclass, its handler class).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar, Self


@dataclass
class Faults:
    # "", "slow" (wait, then answer), "slow_answer" (do the work, wait, then answer: a client
    # that gives up or dies meanwhile leaves the effect applied), "garbage", "error" (500);
    # "down" is HttpSimulator.stop()
    mode: str = ""
    delay: float = 3.0  # seconds, for "slow" and "slow_answer"
    erasure_refusal: str = ""  # when set, erasure requests are refused with this reason


@dataclass
class SimulatorState:
    api_key: str
    faults: Faults = field(default_factory=Faults)
    counts: Counter[str] = field(default_factory=Counter)  # path → requests received
    effects: Counter[str] = field(default_factory=Counter)  # what an erasure applied to → times
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # idempotency key
    lock: threading.Lock = field(default_factory=threading.Lock)


def problem(status: int, title: str, detail: str = "") -> tuple[int, dict[str, Any]]:
    """An RFC 7807 problem (application/problem+json)."""
    return status, {"type": "about:blank", "title": title, "status": status, "detail": detail}


class SimulatorHandler(BaseHTTPRequestHandler):
    state: ClassVar[Any]  # the simulator's SimulatorState (set on the per-server subclass)

    def log_message(self, format: str, *args: Any) -> None:
        return

    def send_json(self, status: int, body: dict[str, Any] | bytes) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        is_problem = isinstance(body, dict) and "title" in body and status >= 400
        if self.state.faults.mode == "slow_answer":
            time.sleep(self.state.faults.delay)
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/problem+json" if is_problem else "application/json")
            self.send_header("Content-Length", str(len(raw)))
            self.end_headers()
            self.wfile.write(raw)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client stopped waiting (a timeout): nothing to tell it

    def json_body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            value = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def count(self, path: str) -> None:
        with self.state.lock:
            self.state.counts[path] += 1

    def faulted(self) -> bool:
        """Play the fault switched on (True: the answer was sent)."""
        mode = self.state.faults.mode
        if mode == "slow":
            time.sleep(self.state.faults.delay)
        if mode == "garbage":
            self.send_json(200, b"<html>maintenance</html>")
            return True
        if mode == "error":
            self.send_json(*problem(500, "Internal Server Error"))
            return True
        return False

    def authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.state.api_key}":
            self.send_json(*problem(401, "Unauthorized", "missing or wrong API key"))
            return False
        return True

    def idempotent(self, apply: Callable[[], tuple[int, dict[str, Any]]]) -> tuple[int, dict[str, Any]]:
        """The answer of a write under its `Idempotency-Key`: `apply()` runs once per key (under
        the state's lock), a key seen before gets the first answer again."""
        key = self.headers.get("Idempotency-Key") or ""
        if not key:
            return problem(400, "Bad Request", "Idempotency-Key is required")
        with self.state.lock:
            if key not in self.state.answers:
                self.state.answers[key] = apply()
            return self.state.answers[key]


class HttpSimulator:
    """A partner's HTTP server on a free (or given) port of `host`; `stop()` makes it down,
    `start()` again listens on the same port."""

    handler: ClassVar[type[SimulatorHandler]]

    def __init__(self, state: SimulatorState, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.requested_port = port
        self.port = port
        self.state = state
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def counts(self) -> Counter[str]:
        return self.state.counts

    @property
    def effects(self) -> Counter[str]:
        return self.state.effects

    @property
    def api_key(self) -> str:
        return str(self.state.api_key)

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        handler = type("Handler", (self.handler,), {"state": self.state})
        self._server = ThreadingHTTPServer((self.host, self.requested_port), handler)
        self._server.daemon_threads = True
        self.port = int(self._server.server_address[1])
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening: the partner is down (a later start() listens on the same port)."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        self.requested_port = self.port

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve_forever(simulator: HttpSimulator) -> None:
    """The command line's loop: serve until interrupted, then stop."""
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
