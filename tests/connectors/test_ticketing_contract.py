"""The ticketing contract's OpenAPI description (docs/connectors/ticketing.openapi.yaml) and the
simulator agree: every request we send validates against the request schemas and every answer
the simulator gives over HTTP against the answer schemas, so the reference implementation and
the contract cannot drift apart. The schema of an eligibility admits no income data."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from connectors.ticketing_simulator import TicketingSimulator, sample_resident
from tests.connectors.conftest import (
    TICKETING_BIRTH,
    TICKETING_ELIGIBLE,
    TICKETING_NOT_ELIGIBLE,
    TICKETING_UNKNOWN,
)

DOCUMENT = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "docs/connectors/ticketing.openapi.yaml").read_text()
)


def _valid(instance: Any, schema: str) -> None:
    jsonschema.Draft202012Validator({**DOCUMENT, "$ref": f"#/components/schemas/{schema}"}).validate(instance)


def _call(
    sim: TicketingSimulator, method: str, path: str, body: Any = None, **headers: str
) -> tuple[int, Any, str]:
    request = urllib.request.Request(
        sim.base_url + path,
        data=json.dumps(body).encode() if body is not None else None,
        headers={"Authorization": f"Bearer {sim.api_key}", "Content-Type": "application/json", **headers},
        method=method,
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status, json.loads(response.read()), response.headers["Content-Type"]
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), exc.headers["Content-Type"]


def test_the_document_is_openapi_3_1_with_every_operation():
    assert DOCUMENT["openapi"].startswith("3.1")
    assert set(DOCUMENT["paths"]) == {
        "/v1/eligibility-checks",
        "/v1/eligibility-status",
        "/v1/residents/{subject}/data",
        "/v1/erasure-requests",
        "/v1/health",
    }
    for schema in DOCUMENT["components"]["schemas"].values():
        jsonschema.Draft202012Validator.check_schema(schema)


def test_an_eligibility_cannot_carry_income_data():
    eligibility = {"scheme": "carte_blanche", "valid_until": "2030-01-01"}
    _valid(eligibility, "Eligibility")
    with pytest.raises(jsonschema.ValidationError):
        _valid({**eligibility, "household_income": 12000}, "Eligibility")


@pytest.mark.parametrize(
    ("card", "born", "result"),
    [
        (TICKETING_ELIGIBLE, TICKETING_BIRTH, "eligible"),
        (TICKETING_NOT_ELIGIBLE, TICKETING_BIRTH, "not_eligible"),
        (TICKETING_UNKNOWN, TICKETING_BIRTH, "not_matching"),
        (TICKETING_ELIGIBLE, "1990-04-13", "not_matching"),
    ],
)
def test_checks_and_statuses_follow_the_schemas(card, born, result):
    with TicketingSimulator() as sim:
        body = {"card_number": card, "birth_date": born}
        _valid(body, "EligibilityCheck")
        status, answer, _type = _call(sim, "POST", "/v1/eligibility-checks", body)
        assert status == 200 and answer["result"] == result
        _valid(answer, "CheckResult")
        status, answer, _type = _call(sim, "POST", "/v1/eligibility-status", {"card_number": card})
        assert status == 200
        _valid(answer, "StatusResult")


def test_unknown_card_and_wrong_birth_date_are_answered_alike():
    with TicketingSimulator() as sim:
        unknown = _call(
            sim,
            "POST",
            "/v1/eligibility-checks",
            {"card_number": TICKETING_UNKNOWN, "birth_date": TICKETING_BIRTH},
        )
        wrong = _call(
            sim,
            "POST",
            "/v1/eligibility-checks",
            {"card_number": TICKETING_ELIGIBLE, "birth_date": "2000-01-01"},
        )
        assert unknown == wrong == (200, {"result": "not_matching"}, "application/json")


def test_resident_data_erasure_problems_and_health_follow_the_schemas():
    with TicketingSimulator() as sim:
        sim.add_resident("sub/with spaces", **sample_resident())
        status, data, _type = _call(sim, "GET", "/v1/residents/sub%2Fwith%20spaces/data")
        assert status == 200 and data["orders"]
        _valid(data, "ResidentData")
        status, empty, _type = _call(sim, "GET", "/v1/residents/nobody/data")
        assert status == 200 and empty == {"orders": [], "tickets": [], "reduced_price_uses": []}
        _valid(empty, "ResidentData")
        body = {"subject": "sub/with spaces", "card_number": TICKETING_ELIGIBLE}
        _valid(body, "ErasureRequest")
        status, answer, _type = _call(sim, "POST", "/v1/erasure-requests", body, **{"Idempotency-Key": "k1"})
        assert status == 202 and answer["kept"]
        _valid(answer, "ErasureAnswer")
        again = _call(sim, "POST", "/v1/erasure-requests", body, **{"Idempotency-Key": "k1"})
        assert again[:2] == (202, answer)
        assert sim.effects["sub/with spaces"] == 1 and sim.effects[TICKETING_ELIGIBLE] == 1
        sim.faults.erasure_refusal = "an order is disputed: kept until the dispute ends"
        status, refused, _type = _call(sim, "POST", "/v1/erasure-requests", body, **{"Idempotency-Key": "k2"})
        assert status == 200 and refused["status"] == "refused"
        _valid(refused, "ErasureAnswer")
        for problem_call in (
            _call(sim, "POST", "/v1/erasure-requests", body),  # no idempotency key
            _call(sim, "POST", "/v1/erasure-requests", {}, **{"Idempotency-Key": "k3"}),
            _call(sim, "POST", "/v1/eligibility-checks", {"card_number": TICKETING_ELIGIBLE}),
            _call(sim, "GET", "/v1/health", Authorization="Bearer wrong"),
            _call(sim, "GET", "/v1/nowhere"),
        ):
            status, problem, content_type = problem_call
            assert status in {400, 401, 404} and content_type == "application/problem+json"
            _valid(problem, "Problem")
        status, health, _type = _call(sim, "GET", "/v1/health")
        assert status == 200 and health == {"status": "ok"}
