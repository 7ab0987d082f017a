"""A cultural-ticketing platform speaking the ticketing contract (docs/connectors/ticketing.md),
for the tests and the demo: a real HTTP server on 127.0.0.1 (connectors.http_simulator), demo
Carte Blanche cards, residents' ticketing data by subject, faults on demand, a count of the
requests and of the effects of the erasures (one per idempotency key).

    python -m connectors.ticketing_simulator --port 6003

prints the demo cards, then serves until interrupted (with `sample_data`: a resident the
platform does not know yet is given a sample order history, so that the demo's export shows
something). In Python:

    with TicketingSimulator() as sim:     # a free port
        sim.add_resident(subject, orders=[...]); sim.faults.mode = "slow"
        sim.counts["/v1/eligibility-checks"], sim.effects[subject]
"""

from __future__ import annotations

import argparse
import hmac
import os
import sys
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, ClassVar
from urllib.parse import unquote

from connectors.http_simulator import (
    HttpSimulator,
    SimulatorHandler,
    SimulatorState,
    problem,
    serve_forever,
)

DEMO_API_KEY = "demo-ticketing-api-key"
DEMO_BIRTH_DATE = date(1990, 4, 12)
SCHEME = "carte_blanche"
SCHEME_LABEL = "Carte Blanche — tarifs réduits de la Ville de Nantes"
INVOICES_KEPT = "invoices: kept 10 years for accounting (Code de commerce, article L123-22)"
_NOBODY = "0000-00-00"  # compared with when the card is unknown: the same work either way


@dataclass
class SimCard:
    card: str
    birth_date: date
    eligibility: dict[str, Any] | None = None


def demo_cards(today: date | None = None) -> list[SimCard]:
    today = today or date.today()
    return [
        SimCard(
            "7700000000000001",
            DEMO_BIRTH_DATE,
            {
                "scheme": SCHEME,
                "label": SCHEME_LABEL,
                "valid_from": (today - timedelta(days=120)).isoformat(),
                "valid_until": (today + timedelta(days=245)).isoformat(),
            },
        ),
        SimCard("7700000000000002", DEMO_BIRTH_DATE),
    ]


DEMO_DESCRIPTIONS = {
    "7700000000000001": "Carte Blanche, reduced prices valid",
    "7700000000000002": "Carte Blanche known, no current eligibility",
}


def sample_resident(today: date | None = None) -> dict[str, list[dict[str, Any]]]:
    """A resident's ticketing data as the platform would export it (demo)."""
    today = today or date.today()
    ordered = (today - timedelta(days=30)).isoformat()
    return {
        "orders": [{"id": "ORD-1001", "date": ordered, "total": "16.00", "currency": "EUR"}],
        "tickets": [
            {
                "id": "TKT-2001",
                "order": "ORD-1001",
                "event": "Le Voyage de Nantes — visite guidée",
                "date": (today - timedelta(days=20)).isoformat(),
                "price_category": "reduced",
            }
        ],
        "reduced_price_uses": [{"ticket": "TKT-2001", "scheme": SCHEME, "date": ordered}],
    }


@dataclass
class _State(SimulatorState):
    cards: dict[str, SimCard] = field(default_factory=dict)
    residents: dict[str, dict[str, list[dict[str, Any]]]] = field(default_factory=dict)
    sample_data: bool = False


class _Handler(SimulatorHandler):
    server_version = "TicketingSimulator/1"
    state: ClassVar[_State]

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        parts = path.split("/")
        counted = "/v1/residents/{subject}/data" if path.startswith("/v1/residents/") else path
        self.count(counted)
        if self.faulted() or not self.authorised():
            return
        if path == "/v1/health":
            self.send_json(200, {"status": "ok"})
        elif len(parts) == 5 and parts[:3] == ["", "v1", "residents"] and parts[4] == "data":
            self.send_json(200, self._resident(unquote(parts[3])))
        else:
            self.send_json(*problem(404, "Not Found"))

    def do_POST(self) -> None:
        path = self.path
        self.count(path)
        if self.faulted() or not self.authorised():
            return
        body = self.json_body()
        if body is None:
            self.send_json(*problem(400, "Bad Request", "a JSON object is required"))
        elif path == "/v1/erasure-requests":
            self.send_json(*self._erasure(body))
        elif not isinstance(body.get("card_number"), str):
            self.send_json(*problem(400, "Bad Request", "card_number is required"))
        elif path == "/v1/eligibility-checks":
            self.send_json(*self._check(body))
        elif path == "/v1/eligibility-status":
            card = self.state.cards.get(body["card_number"])
            self.send_json(*((200, {"result": "unknown"}) if card is None else self._answer(card)))
        else:
            self.send_json(*problem(404, "Not Found"))

    def _resident(self, subject: str) -> dict[str, Any]:
        with self.state.lock:
            if subject not in self.state.residents and self.state.sample_data:
                self.state.residents[subject] = sample_resident()
            data = self.state.residents.get(subject) or {}
        return {name: list(data.get(name, [])) for name in ("orders", "tickets", "reduced_price_uses")}

    def _answer(self, card: SimCard) -> tuple[int, dict[str, Any]]:
        eligibility = card.eligibility
        if eligibility is None or date.fromisoformat(eligibility["valid_until"]) < date.today():
            return 200, {"result": "not_eligible"}
        return 200, {"result": "eligible", "eligibility": dict(eligibility)}

    def _check(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        if not isinstance(body.get("birth_date"), str):
            return problem(400, "Bad Request", "birth_date is required")
        card = self.state.cards.get(body["card_number"])
        expected = card.birth_date.isoformat() if card is not None else _NOBODY
        # One comparison whether the card is known or not: the answer and its time say nothing
        # of which was wrong.
        matches = hmac.compare_digest(expected.encode(), body["birth_date"].encode())
        if card is None or not matches:
            return 200, {"result": "not_matching"}
        return self._answer(card)

    def _erasure(self, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        subject, card_number = body.get("subject"), body.get("card_number")
        if not isinstance(subject, str | None) or not isinstance(card_number, str | None):
            return problem(400, "Bad Request", "subject and card_number are strings")
        if not subject and not card_number:
            return problem(400, "Bad Request", "subject or card_number is required")

        def apply() -> tuple[int, dict[str, Any]]:
            if self.state.faults.erasure_refusal:
                return 200, {"status": "refused", "reason": self.state.faults.erasure_refusal}
            had_orders = False
            if subject:
                self.state.effects[subject] += 1
                had_orders = bool((self.state.residents.pop(subject, None) or {}).get("orders"))
            if card_number:
                self.state.effects[card_number] += 1
                self.state.cards.pop(card_number, None)
            return 202, {"status": "completed", "kept": [INVOICES_KEPT] if had_orders else []}

        return self.idempotent(apply)


class TicketingSimulator(HttpSimulator):
    handler = _Handler
    state: _State

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str = DEMO_API_KEY,
        *,
        sample_data: bool = False,
    ) -> None:
        cards = {card.card: card for card in demo_cards()}
        super().__init__(_State(api_key=api_key, cards=cards, sample_data=sample_data), host=host, port=port)

    def add_resident(self, subject: str, **data: list[dict[str, Any]]) -> None:
        """The platform's data about a resident it knows by `subject` (orders, tickets,
        reduced_price_uses)."""
        with self.state.lock:
            self.state.residents[subject] = data

    def resident(self, subject: str) -> dict[str, list[dict[str, Any]]] | None:
        with self.state.lock:
            return self.state.residents.get(subject)


def print_banner(simulator: TicketingSimulator) -> None:
    print(f"Ticketing platform simulator on {simulator.base_url} (API key {simulator.api_key})")
    print(f"  demo Carte Blanche cards (born {DEMO_BIRTH_DATE.isoformat()}):")
    for card in demo_cards():
        print(f"    {card.card}  {DEMO_DESCRIPTIONS[card.card]}")
    sys.stdout.flush()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Cultural-ticketing contract simulator (demo and tests)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("TICKETING_SIMULATOR_PORT", "6003")))
    args = parser.parse_args(argv)
    simulator = TicketingSimulator(host=args.host, port=args.port, sample_data=True).start()
    print_banner(simulator)
    serve_forever(simulator)
    return 0


if __name__ == "__main__":
    sys.exit(main())
