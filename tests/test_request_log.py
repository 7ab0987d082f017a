"""Request ids, the access line and JSON logs (issue 16, "Observability";
common/request_log.py, config.middleware.RequestLogMiddleware)."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from typing import Any

import pytest
from django.test import Client

from common.request_log import JsonFormatter, RequestIdFilter
from config.wsgi import application  # before the fixtures: its django.setup() configures logging
from identity.oidc.views import userinfo
from tests.test_lean_path import call, environ

pytestmark = pytest.mark.django_db

HEX_ID = re.compile(r"[0-9a-f]{32}")


@pytest.fixture
def json_log() -> Any:
    """The production handler (JSON formatter + request-id filter) on the root logger."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    previous = logging.getLogger("cum.access").level
    logging.getLogger("cum.access").setLevel(logging.INFO)

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    lines.text = stream.getvalue  # type: ignore[attr-defined]
    yield lines
    root.removeHandler(handler)
    logging.getLogger("cum.access").setLevel(previous)


def _access(lines: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [line for line in lines if line["logger"] == "cum.access"]


def test_every_response_carries_a_fresh_request_id(client: Client, json_log: Any):
    first = client.get("/connexion/")
    second = client.get("/connexion/")
    assert HEX_ID.fullmatch(first["X-Request-ID"])
    assert first["X-Request-ID"] != second["X-Request-ID"]
    access = _access(json_log())
    assert [line["request_id"] for line in access] == [first["X-Request-ID"], second["X-Request-ID"]]
    assert access[0]["http"]["route"] == "/connexion/"
    assert access[0]["http"]["status"] == 200
    assert access[0]["http"]["method"] == "GET"
    assert access[0]["http"]["duration_ms"] >= 0


def test_the_proxys_request_id_is_kept_when_trusted(client: Client, settings: Any, json_log: Any):
    settings.REQUEST_ID_FROM_PROXY = True
    response = client.get("/connexion/", HTTP_X_REQUEST_ID="lb-7f3a9c21-0001")
    assert response["X-Request-ID"] == "lb-7f3a9c21-0001"
    assert _access(json_log())[0]["request_id"] == "lb-7f3a9c21-0001"


@pytest.mark.parametrize("offered", ["short", "with space in it", "x" * 129, "id\nforged-line", "é" * 10])
def test_a_malformed_request_id_is_replaced(client: Client, settings: Any, offered: str):
    settings.REQUEST_ID_FROM_PROXY = True
    response = client.get("/connexion/", HTTP_X_REQUEST_ID=offered)
    assert HEX_ID.fullmatch(response["X-Request-ID"])


def test_an_untrusted_request_id_is_ignored(client: Client, settings: Any):
    # Without declared proxies anyone could choose the id that appears in our logs.
    settings.REQUEST_ID_FROM_PROXY = False
    response = client.get("/connexion/", HTTP_X_REQUEST_ID="lb-7f3a9c21-0001")
    assert HEX_ID.fullmatch(response["X-Request-ID"])


def test_the_access_line_names_the_route_never_the_path_or_query(client: Client, json_log: Any):
    # Email links carry one-time tokens in the path; queries carry codes and states.
    secret = "Zq9SecretLinkTokenValue"
    client.get(f"/inscription/verifier/{secret}/?code=AnotherSecret42&state=xyz")
    client.get(f"/nothing-here/{secret}")
    text = json_log.text()
    assert secret not in text and "AnotherSecret42" not in text
    routes = [line["http"]["route"] for line in _access(json_log())]
    assert routes == ["/inscription/verifier/<str:token>/", "-"]
    # Django's own "Not Found: <path>" warning is reduced to its status.
    not_found = [line for line in json_log() if line["logger"] == "django.request"]
    assert not_found and all(secret not in line["message"] for line in not_found)


def test_records_written_during_a_request_carry_its_id(client: Client, settings: Any, json_log: Any):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # readiness logs a warning: Redis unreachable
    response = client.get("/readyz")
    warnings = [line for line in json_log() if line["logger"] == "config.health"]
    assert warnings and {line["request_id"] for line in warnings} == {response["X-Request-ID"]}


def test_json_lines_leave_exception_messages_out():
    # A database error quotes the row's values: only the type and the frames are logged.
    formatter = JsonFormatter()
    try:
        raise ValueError("Key (email)=(camille.dupont@example.org) already exists")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    line = json.loads(formatter.format(record))
    assert line["exception"]["type"] == "builtins.ValueError"
    assert line["exception"]["stack"] and "camille" not in json.dumps(line)
    assert line["message"] == "failed" and line["level"] == "ERROR"


def test_a_server_error_is_logged_with_its_request_id_and_status(json_log: Any, monkeypatch: Any):
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("boom with camille.dupont@example.org")

    monkeypatch.setattr(userinfo.UserInfoView, "get", broken)
    client = Client(raise_request_exception=False)
    response = client.get("/userinfo", HTTP_AUTHORIZATION="Bearer x")
    assert response.status_code == 500
    lines = json_log()
    assert _access(lines)[0]["http"]["status"] == 500
    errors = [line for line in lines if line["logger"] == "django.request"]
    assert errors and errors[0]["request_id"] == response["X-Request-ID"]
    assert errors[0]["exception"]["type"] == "builtins.RuntimeError"
    assert "camille" not in json_log.text()


def test_the_lean_path_gives_the_same_request_id_and_access_line(signing_keys: Any, json_log: Any):
    path = "/.well-known/openid-configuration"
    call(application, environ(path))  # the first answer comes from Django and is kept
    status, headers, _body = call(application, environ(path))  # replayed without Django
    assert status.startswith("200")
    request_id = dict(headers)["X-Request-ID"]
    assert HEX_ID.fullmatch(request_id)
    replayed = _access(json_log())[-1]
    assert replayed["request_id"] == request_id
    assert replayed["http"]["route"] == path and replayed["http"]["status"] == 200
