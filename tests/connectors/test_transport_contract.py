"""The transport contract's OpenAPI description (docs/connectors/transport.openapi.yaml) and the
simulator agree: every answer the simulator gives over HTTP validates against the document's
schemas, so the reference implementation and the contract cannot drift apart."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from connectors.transport_simulator import TransportSimulator
from tests.connectors.conftest import (
    TRANSPORT_BIRTH,
    TRANSPORT_EXPIRED,
    TRANSPORT_NAME,
    TRANSPORT_NO_CONTRACT,
    TRANSPORT_REPLACED,
    TRANSPORT_UNKNOWN,
    TRANSPORT_VALID,
)

DOCUMENT = yaml.safe_load(
    (Path(__file__).resolve().parents[2] / "docs/connectors/transport.openapi.yaml").read_text()
)


def _valid(instance: Any, schema: str) -> None:
    jsonschema.Draft202012Validator({**DOCUMENT, "$ref": f"#/components/schemas/{schema}"}).validate(instance)


def _call(
    sim: TransportSimulator, method: str, path: str, body: Any = None, **headers: str
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
        "/v1/card-checks",
        "/v1/card-status",
        "/v1/erasure-requests",
        "/v1/replacement-notices",
        "/v1/health",
    }
    jsonschema.Draft202012Validator.check_schema(DOCUMENT["components"]["schemas"]["CheckResult"])


@pytest.mark.parametrize(
    ("card", "result"),
    [
        (TRANSPORT_VALID, "contract"),
        (TRANSPORT_EXPIRED, "contract"),
        (TRANSPORT_NO_CONTRACT, "no_contract"),
        (TRANSPORT_REPLACED, "replaced"),
        (TRANSPORT_UNKNOWN, "not_matching"),
    ],
)
def test_checks_and_statuses_follow_the_schemas(card, result):
    with TransportSimulator() as sim:
        body = {"card_number": card, "family_name": TRANSPORT_NAME, "birth_date": TRANSPORT_BIRTH}
        _valid(body, "CardCheck")
        status, answer, _type = _call(sim, "POST", "/v1/card-checks", body)
        assert status == 200 and answer["result"] == result
        _valid(answer, "CheckResult")
        status, answer, _type = _call(sim, "POST", "/v1/card-status", {"card_number": card})
        assert status == 200
        _valid(answer, "StatusResult")


def test_accents_case_and_spaces_do_not_matter_but_the_birth_date_does():
    with TransportSimulator() as sim:
        sim.state.cards[TRANSPORT_VALID].family_name = "Lefèvre"
        ask = {"card_number": TRANSPORT_VALID, "family_name": "  LEFEVRE ", "birth_date": TRANSPORT_BIRTH}
        assert _call(sim, "POST", "/v1/card-checks", ask)[1]["result"] == "contract"
        ask["birth_date"] = "1990-04-13"
        assert _call(sim, "POST", "/v1/card-checks", ask)[1] == {"result": "not_matching"}


def test_erasure_answers_problems_and_notices_follow_the_schemas():
    with TransportSimulator() as sim:
        body = {"card_number": TRANSPORT_VALID}
        status, answer, _type = _call(sim, "POST", "/v1/erasure-requests", body, **{"Idempotency-Key": "k1"})
        assert status == 202
        _valid(answer, "ErasureAnswer")
        assert _call(sim, "POST", "/v1/erasure-requests", body, **{"Idempotency-Key": "k1"})[:2] == (
            202,
            answer,
        )
        assert sim.effects[TRANSPORT_VALID] == 1
        status, problem, content_type = _call(sim, "POST", "/v1/erasure-requests", body)
        assert status == 400 and content_type == "application/problem+json"
        _valid(problem, "Problem")
        status, notices, _type = _call(sim, "GET", "/v1/replacement-notices")
        assert status == 200
        _valid(notices, "ReplacementNotices")
        status, problem, _type = _call(sim, "GET", "/v1/health", Authorization="Bearer wrong")
        assert status == 401
        _valid(problem, "Problem")
