"""Redis or PostgreSQL unreachable: a readable 503, never a 500 page (config/errors.py).

The sign-in page's throttle reads the rate-limit counters first: with the counters in a
Redis nothing listens for, sign-in fails closed with the page, through the real handler.
The protocol and API answers are checked on the handler itself, inside the `except` block
where Django calls it. The same with real processes: tests/ops/test_faults.py.
"""

from __future__ import annotations

import json
import socket
from typing import Any

import pytest
import redis
from django.db import OperationalError
from django.test import Client, RequestFactory, override_settings

from config.errors import RETRY_AFTER_SECONDS, backing_service_down, server_error_view

pytestmark = pytest.mark.django_db


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def redis_down() -> Any:
    url = f"redis://127.0.0.1:{closed_port()}/0"
    caches = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "down"},
        "ratelimit": {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": url},
    }
    with override_settings(CACHES=caches):
        yield


def sign_in_post(client: Client) -> Any:
    return client.post("/connexion/", {"username": "camille@example.org", "password": "Mot-de-passe-42"})


def test_sign_in_with_redis_down_answers_a_readable_503(redis_down: Any) -> None:
    response = sign_in_post(Client(raise_request_exception=False))
    assert response.status_code == 503
    assert response["Content-Type"].startswith("text/html")
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    page = response.content.decode()
    assert "Service momentanément indisponible" in page
    assert "Server Error" not in page


def test_the_page_is_in_the_residents_language(redis_down: Any) -> None:
    response = sign_in_post(Client(raise_request_exception=False, HTTP_ACCEPT_LANGUAGE="en"))
    assert response.status_code == 503
    assert "Service temporarily unavailable" in response.content.decode()


def handled(path: str, exc: BaseException) -> Any:
    request = RequestFactory().post(path)
    try:
        raise exc
    except BaseException:
        return server_error_view(request)


@pytest.mark.parametrize("exc", [redis.ConnectionError("refused"), OperationalError("server closed")])
def test_protocol_endpoints_answer_temporarily_unavailable(exc: BaseException) -> None:
    response = handled("/token", exc)
    assert response.status_code == 503
    assert json.loads(response.content)["error"] == "temporarily_unavailable"
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)


def test_apis_answer_a_problem() -> None:
    response = handled("/consent/api/v1/cookie/choices", redis.TimeoutError("slow"))
    assert response.status_code == 503
    assert response["Content-Type"] == "application/problem+json"
    assert json.loads(response.content)["status"] == 503


def test_a_wrapped_connection_error_counts() -> None:
    try:
        try:
            raise redis.ConnectionError("refused")
        except redis.ConnectionError as inner:
            raise RuntimeError("while reading the session") from inner
    except RuntimeError as outer:
        assert backing_service_down(outer)


def test_any_other_error_stays_a_500() -> None:
    response = handled("/compte/", ValueError("a bug"))
    assert response.status_code == 500
    assert backing_service_down(ValueError("a bug")) is False
