"""Request ids, the access line and JSON logs (issue 16, "Observability";
common/request_log.py, config.middleware.RequestLogMiddleware)."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from prometheus_client import Counter, Histogram

from common import metrics, request_log
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
    # ... and carries the request's id, like every record of the request.
    assert not_found[-1]["request_id"] == _access(json_log())[-1]["request_id"]


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


def test_protocol_requests_name_the_partner_client(flow: Any, json_log: Any):
    # The access lines of the token and userinfo requests carry the partner's client_id.
    code = flow.get_code()
    tokens = flow.token(code).json()
    Client().get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}")
    Client().post("/token", {"grant_type": "client_credentials"}, HTTP_AUTHORIZATION="Basic eDp5")
    by_route = {}
    for line in _access(json_log()):
        by_route.setdefault(line["http"]["route"], []).append(line["http"])
    assert by_route["/token"][0]["client_id"] == flow.rp.client_id
    assert by_route["/userinfo"][0]["client_id"] == flow.rp.client_id
    assert "client_id" not in by_route["/token"][1]  # unknown client: nothing named


# --- The access line written without logging's machinery (common.request_log.end) -------------

FROZEN_TIME = 1796558400.123456


@pytest.fixture
def frozen_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same wall-clock time and a zero duration for every line, so two lines of the same
    request compare byte for byte."""
    monkeypatch.setattr(time, "time", lambda: FROZEN_TIME)
    monkeypatch.setattr(time, "time_ns", lambda: int(FROZEN_TIME * 1e9))
    monkeypatch.setattr(time, "perf_counter", lambda: 1000.0)


def production_handler(stream: io.StringIO) -> logging.StreamHandler[Any]:
    """The handler settings.LOGGING builds with LOG_FORMAT=json."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    return handler


def one_request(route: str = "/userinfo", status: int = 200, client_id: str = "portail-nantes") -> str:
    context, token = request_log.begin({"REQUEST_METHOD": "GET", "HTTP_X_REQUEST_ID": "ignored"})
    context.route = route
    context.started = time.perf_counter()  # the frozen clock's (the field's default was bound before)
    request_log.set_client_id(client_id)
    request_log.end(context, token, status)
    assert request_log.current() is None
    return context.request_id


def through_logging(
    request_id: str, route: str = "/userinfo", status: int = 200, client_id: str = ""
) -> None:
    """What end() wrote before the direct path: the access record through logging."""
    context = request_log.RequestContext(
        request_id=request_id, method="GET", route=route, client_id=client_id
    )
    token = request_log._current.set(context)
    try:
        logging.getLogger("cum.access").info(
            "%s %s %s",
            "GET",
            route,
            status,
            extra={
                "http": {
                    "method": "GET",
                    "route": route,
                    "status": status,
                    "duration_ms": 0.0,
                    **({"client_id": client_id} if client_id else {}),
                }
            },
        )
    finally:
        request_log._current.reset(token)


@pytest.fixture
def access_info() -> Any:
    previous = logging.getLogger("cum.access").level
    logging.getLogger("cum.access").setLevel(logging.INFO)
    yield
    logging.getLogger("cum.access").setLevel(previous)


def test_the_direct_access_line_is_the_line_logging_writes(
    monkeypatch: pytest.MonkeyPatch, frozen_clock: None, access_info: None
):
    stream = io.StringIO()
    handler = production_handler(stream)
    monkeypatch.setattr(logging.root, "handlers", [handler])  # as in production: the only handler
    records: list[logging.LogRecord] = []
    make_record = logging.Logger.makeRecord

    def counting(self: logging.Logger, *args: Any, **kwargs: Any) -> logging.LogRecord:
        record = make_record(self, *args, **kwargs)
        records.append(record)
        return record

    monkeypatch.setattr(logging.Logger, "makeRecord", counting)
    for route, status, client_id in (
        ("/userinfo", 200, "portail-nantes"),
        ("-", 404, ""),
        ("/token", 401, "é"),
    ):
        request_id = one_request(route, status, client_id)
        assert records == []  # written directly, no LogRecord
        direct = stream.getvalue()
        stream.seek(0)
        stream.truncate()
        through_logging(request_id, route, status, client_id)
        assert len(records) == 1
        records.clear()
        assert direct == stream.getvalue()  # byte for byte
        stream.seek(0)
        stream.truncate()
        line = json.loads(direct)
        assert line["request_id"] == request_id and line["http"]["route"] == route
        assert line["time"] == "2026-12-06T12:00:00.123+00:00"


# Strings the access line's fields may hold: JSON's escapes (quote, backslash, control
# characters, U+2028), non-ASCII and astral characters, lone surrogates.
_AWKWARD = ("", "GET", "/userinfo", 'a"b\\c', "\x00\x1f\x7f", "\n\r\t\b\f", "é\u2028\u2029", "🦊", "\ud800x")


@hypothesis_settings(max_examples=300, deadline=None)
@given(
    method=st.sampled_from(_AWKWARD) | st.text(),
    route=st.sampled_from(_AWKWARD) | st.text(),
    client_id=st.sampled_from(_AWKWARD) | st.text(max_size=100),
    status=st.integers(min_value=100, max_value=599) | st.integers(),
    duration_ms=st.sampled_from((0.0, 0.01, 0.5, 7.81, 1234567.89, 1e16, 1e-7))
    | st.floats(min_value=0, allow_nan=False, allow_infinity=False).map(lambda x: round(x, 2)),
    created=st.floats(min_value=0, max_value=4102444800.0),
    request_id=st.sampled_from(("5194518483fed0c8f5699ac4f21c297a", "proxy.id:1-2_3")) | st.none(),
)
def test_the_access_line_is_the_json_formatters_line(
    method: str,
    route: str,
    client_id: str,
    status: int,
    duration_ms: float,
    created: float,
    request_id: str | None,
):
    """The access line assembled by hand is byte for byte the one `_json_line` (JsonFormatter)
    writes for the same record, with or without a current request."""
    context = request_log.RequestContext(request_id="x" * 32, method=method, route=route, client_id=client_id)
    current = request_log.RequestContext(request_id=request_id or "", method="GET")
    token = request_log._current.set(current if request_id is not None else None)
    try:
        http = request_log._http(context, status, duration_ms)
        expected = request_log._json_line(created, "INFO", "cum.access", f"{method} {route} {status}", http)
        assert request_log._access_line(created, context, status, duration_ms) == expected
    finally:
        request_log._current.reset(token)


@pytest.mark.parametrize(
    "odd",
    [
        {"duration_ms": float("nan")},
        {"duration_ms": float("inf")},
        {"duration_ms": 3},
        {"status": True},
        {"route": None},
        {"client_id": 12},
    ],
)
def test_an_access_line_of_unexpected_types_is_the_encoders(odd: dict[str, Any]):
    fields: dict[str, Any] = {"status": 200, "duration_ms": 0.5, "route": "/token", "client_id": "c", **odd}
    context = request_log.RequestContext(
        request_id="r" * 32, method="POST", route=fields["route"], client_id=fields["client_id"]
    )
    token = request_log._current.set(context)
    try:
        http = request_log._http(context, fields["status"], fields["duration_ms"])
        message = f"POST {fields['route']} {fields['status']}"
        expected = request_log._json_line(1.5, "INFO", "cum.access", message, http)
        assert request_log._access_line(1.5, context, fields["status"], fields["duration_ms"]) == expected
    finally:
        request_log._current.reset(token)


def _text_formatter(handler: logging.Handler) -> None:
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"))


class _JsonSubclass(JsonFormatter):
    pass


class _Dropping(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return False


# Configurations where the record must go through logging, and what logging then writes.
OTHER_CONFIGURATIONS: dict[str, Callable[[logging.StreamHandler[Any], logging.Logger], None]] = {
    "the text format": lambda handler, access: _text_formatter(handler),
    "a formatter of another class": lambda handler, access: handler.setFormatter(_JsonSubclass()),
    "a second handler": lambda handler, access: logging.root.addHandler(production_handler(handler.stream)),
    "the handler above INFO": lambda handler, access: handler.setLevel(logging.WARNING),
    "cum.access above INFO": lambda handler, access: access.setLevel(logging.WARNING),
    "a filter on cum.access": lambda handler, access: access.addFilter(_Dropping()),
    "a second filter on the handler": lambda handler, access: handler.addFilter(_Dropping()),
    "no filter on the handler": lambda handler, access: handler.removeFilter(handler.filters[0]),
    "a handler on cum.access": lambda handler, access: access.addHandler(production_handler(handler.stream)),
    "cum.access not propagating": lambda handler, access: setattr(access, "propagate", False),
    "cum.access disabled": lambda handler, access: setattr(access, "disabled", True),
    "a handler of another class": lambda handler, access: logging.root.handlers.__setitem__(
        0, logging.FileHandler(os.devnull)
    ),
    "logging disabled": lambda handler, access: logging.disable(logging.INFO),
}


@pytest.mark.parametrize("configure", OTHER_CONFIGURATIONS.values(), ids=OTHER_CONFIGURATIONS.keys())
def test_any_other_configuration_goes_through_logging(
    monkeypatch: pytest.MonkeyPatch,
    frozen_clock: None,
    access_info: None,
    configure: Callable[[logging.StreamHandler[Any], logging.Logger], None],
):
    access = logging.getLogger("cum.access")
    outputs = []
    for write in ("end", "logging"):
        stream = io.StringIO()
        handler = production_handler(stream)
        monkeypatch.setattr(logging.root, "handlers", [handler])
        monkeypatch.setattr(access, "handlers", [])
        monkeypatch.setattr(access, "filters", [])
        monkeypatch.setattr(access, "propagate", True)
        monkeypatch.setattr(access, "disabled", False)
        access.setLevel(logging.INFO)
        configure(handler, access)
        try:
            if write == "end":
                request_id = one_request(client_id="")
            else:
                through_logging(request_id)
        finally:
            logging.disable(logging.NOTSET)
            access.setLevel(logging.INFO)
            for extra in logging.root.handlers:
                if extra.stream is not stream:  # type: ignore[attr-defined]
                    extra.close()
        outputs.append(stream.getvalue())
    assert outputs[0] == outputs[1]


def test_the_same_line_through_logging_or_not_when_a_second_handler_is_added(
    monkeypatch: pytest.MonkeyPatch, frozen_clock: None, access_info: None
):
    first, second = io.StringIO(), io.StringIO()
    monkeypatch.setattr(logging.root, "handlers", [production_handler(first)])
    one_request()
    logging.root.addHandler(production_handler(second))
    one_request()
    direct, logged = first.getvalue().splitlines()
    assert second.getvalue().splitlines() == [logged]
    comparable = [
        {k: v for k, v in json.loads(line).items() if k != "request_id"} for line in (direct, logged)
    ]
    assert comparable[0] == comparable[1]


def test_a_write_error_is_the_handlers_to_report(monkeypatch: pytest.MonkeyPatch, access_info: None):
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise OSError("disk full")

    handler = production_handler(Broken())
    reported: list[logging.LogRecord] = []
    monkeypatch.setattr(handler, "handleError", reported.append)  # logging's own, on this handler
    monkeypatch.setattr(logging.root, "handlers", [handler])
    request_id = one_request("/token", 400, "x")
    assert request_log.current() is None
    [record] = reported
    assert (record.name, record.levelno, record.getMessage()) == (
        "cum.access",
        logging.INFO,
        "GET /token 400",
    )
    assert record.http["status"] == 400 and record.http["client_id"] == "x"  # type: ignore[attr-defined]
    assert request_id


def test_metrics_children_are_prometheus_own():
    counter = Counter("cum_test_children", "A test counter.", ["route"], registry=None)
    histogram = Histogram("cum_test_children_seconds", "A test histogram.", ["route"], registry=None)
    metrics.child(counter, "/a").inc()
    assert metrics.child(counter, "/a") is counter.labels("/a")
    assert metrics.child(histogram, "/a") is histogram.labels("/a")
    counter.remove("/a")
    metrics.child(counter, "/a").inc(2)  # a new child after remove, as labels() gives
    assert counter.labels("/a")._value.get() == 2
    counter.clear()
    metrics.child(counter, "/b").inc()
    assert [
        sample.labels for sample in next(iter(counter.collect())).samples if sample.name.endswith("_total")
    ] == [{"route": "/b"}]
