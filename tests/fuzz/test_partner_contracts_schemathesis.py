"""Schemathesis against the partner contracts' simulators (issue 16, "Fuzzing"): the OpenAPI
descriptions we publish for the ticketing platform and the transport operator
(docs/connectors/ticketing.openapi.yaml, transport.openapi.yaml) drive generated valid and
invalid requests to their simulators (connectors/ticketing_simulator.py,
transport_simulator.py) on real HTTP sockets, with and without the API key. Every answer must
be a status the contract lists for the operation (never a 5xx: the simulators inject no fault
here), with the declared content type, headers and a body matching the declared schema; data
the contract forbids must be refused. So the reference implementation our connectors are
tested against cannot drift from the contract partners implement."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi import checks

from connectors.http_simulator import HttpSimulator
from connectors.ticketing_simulator import TicketingSimulator
from connectors.transport_simulator import TransportSimulator

DOCS = Path(__file__).resolve().parents[2] / "docs" / "connectors"
DERANDOMIZE = os.environ.get("CI") == "true"  # as tests/fuzz/test_openapi_schemathesis.py

CHECKS = [
    not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_headers_conformance,
    checks.response_schema_conformance,
    checks.negative_data_rejection,
]


@pytest.fixture(params=["ticketing", "transport"])
def contract(request: pytest.FixtureRequest) -> Iterator[tuple[Any, HttpSimulator]]:
    simulator: HttpSimulator = TicketingSimulator() if request.param == "ticketing" else TransportSimulator()
    with simulator as sim:
        yield schemathesis.openapi.from_path(str(DOCS / f"{request.param}.openapi.yaml")), sim


def _fuzz(schema: Any, sim: HttpSimulator, headers: dict[str, str]) -> int:
    failures: dict[str, str] = {}
    operations = [result.ok() for result in schema.get_all_operations()]
    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(
            max_examples=25,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
            derandomize=DERANDOMIZE,
        )
        def answers_as_described(case: Any) -> None:
            case.call_and_validate(base_url=sim.base_url, headers=headers, checks=CHECKS, timeout=5)

        try:
            answers_as_described()
        except Exception as exc:  # collected: every operation is tried
            failures[operation.label] = f"{type(exc).__name__}: {str(exc)[:800]}"
    assert not failures, "\n\n".join(f"{label}\n{why}" for label, why in failures.items())
    # Every operation reached the simulator's socket, many times.
    assert len(sim.counts) >= len(operations) and sum(sim.counts.values()) >= 10 * len(operations), sim.counts
    return len(operations)


def test_the_simulator_answers_as_its_contract_describes(contract: tuple[Any, HttpSimulator]) -> None:
    schema, sim = contract
    assert _fuzz(schema, sim, {"Authorization": f"Bearer {sim.api_key}"}) >= 4


def test_without_the_api_key_the_simulator_refuses_as_described(contract: tuple[Any, HttpSimulator]) -> None:
    schema, sim = contract
    _fuzz(schema, sim, {"Authorization": "Bearer not-the-key"})
