"""A Naolib operator speaking the transport contract (docs/connectors/transport.md), for the
tests and the demo: a real HTTP server (http.server, threads) on 127.0.0.1, demo cards,
faults on demand, a count of the requests and of the effects of each idempotency key, and
erasure answers held on demand (`hold_erasures()`: a test kills the caller in the middle).

    python -m connectors.transport_simulator --port 6002

prints the demo cards, then serves until interrupted. In Python:

    with TransportSimulator() as sim:     # a free port
        sim.base_url, sim.faults.mode = "slow", sim.counts["/v1/card-checks"], sim.effects
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import threading
import time
import unicodedata
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEMO_API_KEY = "demo-transport-api-key"


@dataclass
class SimCard:
    card: str
    family_name: str
    birth_date: date
    contract: dict[str, Any] | None = None
    replaced_by: str = ""


def demo_cards(today: date | None = None) -> list[SimCard]:
    today = today or date.today()
    return [
        SimCard(
            "2501000000000001",
            "Martin",
            date(1990, 4, 12),
            {
                "type": "annual",
                "label": "Abonnement annuel Libertan",
                "valid_from": (today - timedelta(days=100)).isoformat(),
                "valid_until": (today + timedelta(days=265)).isoformat(),
            },
        ),
        SimCard(
            "2501000000000002",
            "Martin",
            date(1990, 4, 12),
            {
                "type": "monthly",
                "label": "Abonnement mensuel",
                "valid_from": (today - timedelta(days=60)).isoformat(),
                "valid_until": (today - timedelta(days=30)).isoformat(),
            },
        ),
        SimCard("2501000000000003", "Martin", date(1990, 4, 12)),
        SimCard("2501000000000004", "Martin", date(1990, 4, 12), replaced_by="2501000000000001"),
    ]


DEMO_DESCRIPTIONS = {
    "2501000000000001": "annual subscription, valid",
    "2501000000000002": "monthly subscription, expired",
    "2501000000000003": "no subscription on this card",
    "2501000000000004": "replaced by the card ending in 0001",
}


@dataclass
class Faults:
    mode: str = ""  # "", "slow", "garbage", "error" (500); "down" is TransportSimulator.stop()
    delay: float = 3.0  # seconds, for "slow"
    erasure_refusal: str = ""  # when set, erasure requests are refused with this reason
    hold_erasures: bool = False  # erasure requests: applied, then answered only once released


def _masked(card: str) -> str:
    return f"•••• {card[-4:]}"


def _fold(name: str) -> str:
    """As the contract asks: without case, accents and extra spaces."""
    decomposed = unicodedata.normalize("NFKD", " ".join(name.split()).casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


@dataclass
class _State:
    cards: dict[str, SimCard]
    api_key: str
    faults: Faults = field(default_factory=Faults)
    counts: Counter[str] = field(default_factory=Counter)
    effects: Counter[str] = field(default_factory=Counter)  # card → erasures applied
    answers: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)  # idempotency key
    lock: threading.Lock = field(default_factory=threading.Lock)
    held: threading.Event = field(default_factory=threading.Event)  # an erasure answer is held
    release: threading.Event = field(default_factory=threading.Event)  # let held answers go


def _problem(status: int, title: str, detail: str = "") -> tuple[int, dict[str, Any]]:
    return status, {"type": "about:blank", "title": title, "status": status, "detail": detail}


class _Handler(BaseHTTPRequestHandler):
    server_version = "NaolibSimulator/1"
    state: _State

    def log_message(self, format: str, *args: Any) -> None:
        return

    def _send(self, status: int, body: dict[str, Any] | bytes) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        problem = isinstance(body, dict) and "title" in body and status >= 400
        self.send_response(status)
        self.send_header("Content-Type", "application/problem+json" if problem else "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def _body(self) -> dict[str, Any] | None:
        length = int(self.headers.get("Content-Length") or 0)
        try:
            value = json.loads(self.rfile.read(length) or b"null")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _faulted(self) -> bool:
        mode = self.state.faults.mode
        if mode == "slow":
            time.sleep(self.state.faults.delay)
        if mode == "garbage":
            self._send(200, b"<html>maintenance</html>")
            return True
        if mode == "error":
            self._send(*_problem(500, "Internal Server Error"))
            return True
        return False

    def _authorised(self) -> bool:
        if self.headers.get("Authorization") != f"Bearer {self.state.api_key}":
            self._send(*_problem(401, "Unauthorized", "missing or wrong API key"))
            return False
        return True

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        with self.state.lock:
            self.state.counts[path] += 1
        if self._faulted() or not self._authorised():
            return
        if path == "/v1/health":
            self._send(200, {"status": "ok"})
        elif path == "/v1/replacement-notices":
            notices = [
                {"card_number": card.card, "masked_replacement": _masked(card.replaced_by)}
                for card in self.state.cards.values()
                if card.replaced_by
            ]
            self._send(200, {"notices": notices, "next": ""})
        else:
            self._send(*_problem(404, "Not Found"))

    def do_POST(self) -> None:
        path = self.path
        with self.state.lock:
            self.state.counts[path] += 1
        if self._faulted() or not self._authorised():
            return
        body = self._body()
        if body is None or not isinstance(body.get("card_number"), str):
            self._send(*_problem(400, "Bad Request", "card_number is required"))
            return
        card = self.state.cards.get(body["card_number"])
        if path == "/v1/card-checks":
            self._send(*self._check(card, body))
        elif path == "/v1/card-status":
            self._send(*self._status(card))
        elif path == "/v1/erasure-requests":
            answer = self._erasure(body["card_number"])
            if _held(self.state):
                _answer_a_caller_maybe_gone(self, *answer)
            else:
                self._send(*answer)
        else:
            self._send(*_problem(404, "Not Found"))

    def _answer(self, card: SimCard) -> tuple[int, dict[str, Any]]:
        if card.replaced_by:
            replacement = {"masked_card_number": _masked(card.replaced_by)}
            return 200, {"result": "replaced", "replacement": replacement}
        if card.contract is None:
            return 200, {"result": "no_contract"}
        return 200, {"result": "contract", "contract": dict(card.contract)}

    def _check(self, card: SimCard | None, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not isinstance(body.get("family_name"), str) or not isinstance(body.get("birth_date"), str):
            return _problem(400, "Bad Request", "family_name and birth_date are required")
        if (
            card is None
            or _fold(card.family_name) != _fold(body["family_name"])
            or card.birth_date.isoformat() != body["birth_date"]
        ):
            return 200, {"result": "not_matching"}
        return self._answer(card)

    def _status(self, card: SimCard | None) -> tuple[int, dict[str, Any]]:
        return (200, {"result": "unknown"}) if card is None else self._answer(card)

    def _erasure(self, card_number: str) -> tuple[int, dict[str, Any]]:
        key = self.headers.get("Idempotency-Key") or ""
        if not key:
            return _problem(400, "Bad Request", "Idempotency-Key is required")
        with self.state.lock:
            if key in self.state.answers:
                return self.state.answers[key]
            if self.state.faults.erasure_refusal:
                answer = (200, {"status": "refused", "reason": self.state.faults.erasure_refusal})
            else:
                self.state.effects[card_number] += 1
                self.state.cards.pop(card_number, None)
                answer = (202, {"status": "completed"})
            self.state.answers[key] = answer
            return answer


# --- holding an answer (tests: a worker killed mid-delivery) ----------------------------------


def _held(state: _State) -> bool:
    """With `faults.hold_erasures`, an erasure request already applied waits here for
    `release` before it is answered: the caller can be killed while it waits for the answer."""
    if not state.faults.hold_erasures:
        return False
    state.held.set()
    state.release.wait()
    return True


def _answer_a_caller_maybe_gone(handler: _Handler, status: int, body: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):  # the caller died while its answer was held
        handler._send(status, body)


class TransportSimulator:
    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str = DEMO_API_KEY) -> None:
        self.host = host
        self.requested_port = port
        self.state = _State(cards={card.card: card for card in demo_cards()}, api_key=api_key)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.port = port

    @property
    def faults(self) -> Faults:
        return self.state.faults

    @property
    def counts(self) -> Counter[str]:
        return self.state.counts

    @property
    def effects(self) -> Counter[str]:
        return self.state.effects

    def hold_erasures(self) -> None:
        """Apply erasure requests but hold their answers until `release_held()`."""
        self.state.release.clear()
        self.state.held.clear()
        self.state.faults.hold_erasures = True

    def wait_held(self, timeout: float) -> bool:
        """True once an erasure request was applied and its answer is being held."""
        return self.state.held.wait(timeout)

    def release_held(self) -> None:
        """Answer the held requests (and stop holding new ones)."""
        self.state.faults.hold_erasures = False
        self.state.release.set()

    @property
    def api_key(self) -> str:
        return self.state.api_key

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> TransportSimulator:
        handler = type("Handler", (_Handler,), {"state": self.state})
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

    def __enter__(self) -> TransportSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def print_banner(simulator: TransportSimulator) -> None:
    print(f"Naolib transport simulator on {simulator.base_url} (API key {simulator.api_key})")
    print("  demo cards (family name Martin, born 1990-04-12):")
    for card in demo_cards():
        print(f"    {card.card}  {DEMO_DESCRIPTIONS[card.card]}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Naolib transport-contract simulator (demo and tests)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("TRANSPORT_SIMULATOR_PORT", "6002")))
    args = parser.parse_args(argv)
    simulator = TransportSimulator(host=args.host, port=args.port).start()
    print_banner(simulator)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
