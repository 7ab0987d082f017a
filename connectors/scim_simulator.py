"""A partner's SCIM 2.0 service for the tests and the demo: the real `scim2-server` package
(its WSGI application over an in-memory storage, RFC 7643 schemas, ETags, a static bearer
token) served on a real HTTP socket of 127.0.0.1 (wsgiref, one thread per request), with
faults on demand and a count of the requests and of the users created.

    python -m connectors.scim_simulator --port 6003

prints its base URL and token, then serves until interrupted. In Python:

    with ScimSimulator() as sim:          # a free port
        sim.base_url, sim.token, sim.users(), sim.faults.mode = "slow", sim.counts["POST /Users"]

Faults (`sim.faults.mode`): "down" (the socket is closed: connections refused, the port kept
for `recover()`), "slow" (each answer waits `faults.delay` seconds before the request is
served), "slow_after" (a write served, then its answer waits), "garbage" (200 with a body
that is not SCIM), "error" (503). `sim.go_down()` / `sim.recover()` stop and restart the
socket on the same port, the users kept.
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from scim2_models import ScimProvider
from scim2_server.memory import InMemoryStorage
from scim2_server.service import ScimService
from scim2_server.testserver.application import BEARER_TOKEN_SCHEME, BearerTokenApplication
from scim2_server.testserver.cli import ThreadingWSGIServer
from scim2_server.utils import (
    load_default_resource_types,
    load_default_schemas,
    load_default_service_provider_config,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

DEMO_TOKEN = "demo-scim-bearer-token"
PREFIX = "/scim/v2"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"


@dataclass
class Faults:
    mode: str = ""  # "", "slow", "slow_after", "garbage", "error"
    delay: float = 2.0


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return  # no request lines on the test output or the demo console


def _provider() -> ScimProvider:
    config = load_default_service_provider_config()
    config.authentication_schemes = [*(config.authentication_schemes or []), BEARER_TOKEN_SCHEME]
    return ScimProvider.from_discovery(
        load_default_schemas().values(), load_default_resource_types().values(), config=config
    )


class ScimSimulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, token: str = DEMO_TOKEN) -> None:
        self.host, self.port, self.token = host, port, token
        self.faults = Faults()
        self.counts: Counter[str] = Counter()  # "METHOD /path" → requests; "If-Match" → conditional ones
        self.idempotency_keys: set[str] = set()
        self.storage = InMemoryStorage()
        provider = _provider()
        self.app = BearerTokenApplication(
            self.storage, provider, service=ScimService(provider, secret=token), bearer_tokens=[token]
        )
        self._server: ThreadingWSGIServer | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}{PREFIX}"

    def users(self) -> list[dict[str, Any]]:
        """Every user the partner holds, as JSON."""
        dumped = [
            resource.model_dump(scim_ctx=None, by_alias=True, exclude_none=True, mode="json")
            for resource in self.storage.resources
        ]
        return [item for item in dumped if USER_SCHEMA in item.get("schemas", [])]

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        path = str(environ.get("PATH_INFO") or "")
        with self._lock:
            self.counts[f"{environ.get('REQUEST_METHOD')} {path.removeprefix(PREFIX).split('?')[0]}"] += 1
            if environ.get("HTTP_IF_MATCH"):
                self.counts["If-Match"] += 1
            if environ.get("HTTP_IDEMPOTENCY_KEY"):
                self.idempotency_keys.add(str(environ["HTTP_IDEMPOTENCY_KEY"]))
        mode = self.faults.mode
        if mode == "slow":
            time.sleep(self.faults.delay)
        elif mode == "garbage":
            start_response("200 OK", [("Content-Type", "application/scim+json")])
            return [b"<html>Service temporarily replaced by a proxy page</html>"]
        elif mode == "error":
            start_response("503 Service Unavailable", [("Content-Type", "text/plain")])
            return [b"maintenance"]
        if not path.startswith(PREFIX):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found"]
        # The package's application serves /v2/…: the partner's prefix is ours.
        environ = {**environ, "PATH_INFO": path.removeprefix("/scim"), "SCRIPT_NAME": "/scim"}
        if mode == "slow_after" and environ.get("REQUEST_METHOD") != "GET":
            # A write applied, its answer late (a client killed or timed out meanwhile).
            body = list(self.app(environ, start_response))
            time.sleep(self.faults.delay)
            return body
        return self.app(environ, start_response)

    def start(self) -> ScimSimulator:
        server = make_server(
            self.host, self.port, self, server_class=ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self.port = int(server.server_address[1])
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, name="scim-simulator", daemon=True)
        self._thread.start()
        return self

    def go_down(self) -> None:
        """The partner is down: its socket closed (connections refused); users kept."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def recover(self) -> None:
        """Back up on the same port."""
        if self._server is None:
            self.start()

    def stop(self) -> None:
        self.go_down()

    def __enter__(self) -> ScimSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def print_banner(simulator: ScimSimulator) -> None:
    print(f"SCIM partner simulator (scim2-server) on {simulator.base_url}", flush=True)
    print(f"  bearer token: {simulator.token}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A partner's SCIM 2.0 service (scim2-server) on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=6003)
    parser.add_argument("--token", default=DEMO_TOKEN)
    args = parser.parse_args(argv)
    simulator = ScimSimulator(port=args.port, token=args.token).start()
    print_banner(simulator)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
