"""Small HTTP servers on 127.0.0.1 for tests: partners' endpoints and documents on real sockets.

- RecordingServer: a partner's endpoint (back-channel logout, outbox deliveries). Records
  every POST (path, content type, form fields, headers) and answers `status`, settable
  while it runs; a 3xx answer points elsewhere on the same server, and a GET (which only a
  followed redirect would send) is recorded too. `delay` (seconds) before answering a POST:
  a slow partner.
- DocumentServer: serves fixed documents by path (sector identifier documents, JWK sets):
  `routes[path] = (status, headers, body)` (a path with a query string falls back on its
  route without it: a page's callback), every path requested recorded in `requested`,
  an optional `delay` before answering; unknown paths answer 404.

Give `port` to come back on the port of a server that went down.
"""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs


class LocalServer:
    def __init__(self, handler: type[BaseHTTPRequestHandler], port: int = 0) -> None:
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", port), handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def address(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _QuietHandler(BaseHTTPRequestHandler):
    def log_message(self, *args: Any) -> None:
        pass


class RecordingServer(LocalServer):
    def __init__(self, path: str, port: int = 0) -> None:
        self.path = path
        self.status = 200
        self.delay = 0.0
        self.received: list[dict[str, Any]] = []
        recorder = self

        class Handler(_QuietHandler):
            def _record(self, body: str) -> None:
                with recorder.lock:
                    recorder.received.append(
                        {
                            "path": self.path,
                            "content_type": self.headers.get("Content-Type", ""),
                            "fields": {k: v[0] for k, v in parse_qs(body).items()},
                            "headers": dict(self.headers),
                        }
                    )

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                self._record(self.rfile.read(length).decode())
                if recorder.delay:
                    time.sleep(recorder.delay)
                status = recorder.status
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", recorder.address("/elsewhere"))
                self.send_header("Content-Length", "0")
                self.end_headers()

            def do_GET(self) -> None:
                self._record("")
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

        super().__init__(Handler, port)

    @property
    def url(self) -> str:
        return self.address(self.path)


class DocumentServer(LocalServer):
    def __init__(self, port: int = 0) -> None:
        self.routes: dict[str, tuple[int, dict[str, str], bytes]] = {}
        self.requested: list[str] = []
        self.delay = 0.0
        documents = self

        class Handler(_QuietHandler):
            def do_GET(self) -> None:
                documents.requested.append(self.path)
                if documents.delay:
                    time.sleep(documents.delay)
                route = documents.routes.get(self.path) or documents.routes.get(self.path.partition("?")[0])
                status, headers, body = route or (404, {}, b"not found")
                try:
                    self.send_response(status)
                    for name, value in headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                except OSError:
                    pass  # the client gave up (timeout, size limit)

        super().__init__(Handler, port)

    def url(self, path: str) -> str:
        return self.address(path)

    def serve_json(self, path: str, document: Any, status: int = 200) -> str:
        self.routes[path] = (status, {"Content-Type": "application/json"}, json.dumps(document).encode())
        return self.url(path)

    def serve_raw(
        self, path: str, body: bytes, status: int = 200, headers: dict[str, str] | None = None
    ) -> str:
        self.routes[path] = (status, headers or {"Content-Type": "application/json"}, body)
        return self.url(path)
