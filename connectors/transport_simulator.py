"""A Naolib operator speaking the transport contract (docs/connectors/transport.md), for the
tests and the demo: a real HTTP server on 127.0.0.1 (connectors.http_simulator), demo cards,
faults on demand, a count of the requests and of the effects of each idempotency key, and
erasure answers held on demand (`hold_erasures()`: a test kills the caller in the middle).

    python -m connectors.transport_simulator --port 6002

prints the demo cards, then serves until interrupted. In Python:

    with TransportSimulator() as sim:     # a free port
        sim.base_url, sim.faults.mode = "slow", sim.counts["/v1/card-checks"], sim.effects
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import unicodedata
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, ClassVar

from connectors.http_simulator import (
    HttpSimulator,
    SimulatorHandler,
    SimulatorState,
    serve_forever,
)
from connectors.http_simulator import problem as _problem

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


def _masked(card: str) -> str:
    return f"•••• {card[-4:]}"


def _fold(name: str) -> str:
    """As the contract asks: without case, accents and extra spaces."""
    decomposed = unicodedata.normalize("NFKD", " ".join(name.split()).casefold())
    return "".join(char for char in decomposed if not unicodedata.combining(char))


@dataclass
class _State(SimulatorState):
    cards: dict[str, SimCard] = field(default_factory=dict)
    hold_erasures: bool = False  # erasure requests: applied, then answered only once released
    held: threading.Event = field(default_factory=threading.Event)  # an erasure answer is held
    release: threading.Event = field(default_factory=threading.Event)  # let held answers go


class _Handler(SimulatorHandler):
    server_version = "NaolibSimulator/1"
    state: ClassVar[_State]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        self.count(path)
        if self.faulted() or not self.authorised():
            return
        if path == "/v1/health":
            self.send_json(200, {"status": "ok"})
        elif path == "/v1/replacement-notices":
            notices = [
                {"card_number": card.card, "masked_replacement": _masked(card.replaced_by)}
                for card in self.state.cards.values()
                if card.replaced_by
            ]
            self.send_json(200, {"notices": notices, "next": ""})
        else:
            self.send_json(*_problem(404, "Not Found"))

    def do_POST(self) -> None:
        path = self.path
        self.count(path)
        if self.faulted() or not self.authorised():
            return
        body = self.json_body()
        if body is None or not isinstance(body.get("card_number"), str):
            self.send_json(*_problem(400, "Bad Request", "card_number is required"))
            return
        card = self.state.cards.get(body["card_number"])
        if path == "/v1/card-checks":
            self.send_json(*self._check(card, body))
        elif path == "/v1/card-status":
            self.send_json(*self._status(card))
        elif path == "/v1/erasure-requests":
            answer = self._erasure(body["card_number"])
            _hold_if_asked(self.state)
            self.send_json(*answer)  # a caller killed meanwhile is not an error here
        else:
            self.send_json(*_problem(404, "Not Found"))

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
        def apply() -> tuple[int, dict[str, Any]]:
            if self.state.faults.erasure_refusal:
                return 200, {"status": "refused", "reason": self.state.faults.erasure_refusal}
            self.state.effects[card_number] += 1
            self.state.cards.pop(card_number, None)
            return 202, {"status": "completed"}

        return self.idempotent(apply)


# --- holding an answer (tests: a worker killed mid-delivery) ----------------------------------


def _hold_if_asked(state: _State) -> None:
    """With `hold_erasures`, an erasure request already applied waits here for `release`
    before it is answered: the caller can be killed while it waits for the answer."""
    if state.hold_erasures:
        state.held.set()
        state.release.wait()


class TransportSimulator(HttpSimulator):
    handler = _Handler
    state: _State

    def __init__(self, host: str = "127.0.0.1", port: int = 0, api_key: str = DEMO_API_KEY) -> None:
        cards = {card.card: card for card in demo_cards()}
        super().__init__(_State(api_key=api_key, cards=cards), host=host, port=port)

    def hold_erasures(self) -> None:
        """Apply erasure requests but hold their answers until `release_held()`."""
        self.state.release.clear()
        self.state.held.clear()
        self.state.hold_erasures = True

    def wait_held(self, timeout: float) -> bool:
        """True once an erasure request was applied and its answer is being held."""
        return self.state.held.wait(timeout)

    def release_held(self) -> None:
        """Answer the held requests (and stop holding new ones)."""
        self.state.hold_erasures = False
        self.state.release.set()


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
    serve_forever(simulator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
