"""Discovery and JWKS from precomputed bytes: ETag, 304, HEAD, Cache-Control, the lean WSGI
path (config/lean_path.py) answering exactly as the full stack does, and JWKS invalidation
when signing keys change (in this process, on expiry, and in another process)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.conf import settings
from django.core.handlers.wsgi import WSGIHandler
from django.core.signals import request_finished, request_started
from django.db import close_old_connections, connection
from django.test import Client
from django.utils import timezone

from config.lean_path import LeanProtocolPath
from identity import keys
from identity.keys import announce_key_change, signing_key_rotate
from identity.models import SigningKey

pytestmark = pytest.mark.django_db

DOCUMENTS = ["/.well-known/openid-configuration", "/.well-known/oauth-authorization-server", "/jwks.json"]


class CountingHandler(WSGIHandler):
    """Django's own WSGI handler, counting the requests that reach it."""

    calls = 0

    def __call__(self, environ: Any, start_response: Any) -> Any:
        self.calls += 1
        return super().__call__(environ, start_response)


def environ(path: str, method: str = "GET", host: str = "testserver", **headers: str) -> dict[str, Any]:
    env = {
        "REQUEST_METHOD": method,
        "PATH_INFO": path,
        "SCRIPT_NAME": "",
        "QUERY_STRING": "",
        "SERVER_NAME": "testserver",
        "SERVER_PORT": "80",
        "SERVER_PROTOCOL": "HTTP/1.1",
        "HTTP_HOST": host,
        "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(b""),
        "wsgi.errors": io.StringIO(),
        "wsgi.version": (1, 0),
        "wsgi.multithread": True,
        "wsgi.multiprocess": False,
        "wsgi.run_once": False,
    }
    env.update({"HTTP_" + name.upper(): value for name, value in headers.items()})
    return env


def call(app: Any, env: dict[str, Any]) -> tuple[str, list[tuple[str, str]], bytes]:
    seen: dict[str, Any] = {}

    def start_response(status: str, headers: list[tuple[str, str]], *exc_info: Any) -> None:
        seen["status"], seen["headers"] = status, headers

    result = app(env, start_response)
    try:
        body = b"".join(result)
    finally:
        if hasattr(result, "close"):
            result.close()
    return seen["status"], seen["headers"], body


def kids(body: bytes) -> set[str]:
    return {key["kid"] for key in json.loads(body)["keys"]}


@pytest.fixture(autouse=True)
def _connections_kept_open() -> Any:
    """As Django's test client does: the test's transaction keeps its connection."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    yield
    request_started.connect(close_old_connections)
    request_finished.connect(close_old_connections)


@pytest.fixture
def lean(signing_keys: Any) -> tuple[LeanProtocolPath, CountingHandler]:
    django_app = CountingHandler()
    return LeanProtocolPath(django_app), django_app


# --- The documents themselves (full stack, Django's test client) ---------------------------


@pytest.mark.parametrize("path", DOCUMENTS)
def test_documents_carry_a_strong_etag_and_public_cache_control(client: Client, signing_keys: Any, path: str):
    response = client.get(path)
    assert response.status_code == 200
    etag = response["ETag"]
    assert etag.startswith('"') and etag.endswith('"') and not etag.startswith("W/")
    assert response["Cache-Control"].startswith("public, max-age=")
    assert response["Access-Control-Allow-Origin"] == "*"
    assert client.get(path)["ETag"] == etag  # same bytes, same tag


def test_jwks_max_age_is_the_configured_one(client: Client, signing_keys: Any):
    assert (
        client.get("/jwks.json")["Cache-Control"] == f"public, max-age={settings.OIDC_JWKS_MAX_AGE_SECONDS}"
    )
    assert settings.OIDC_JWKS_MAX_AGE_SECONDS <= settings.OIDC_KEY_PUBLISH_AHEAD_SECONDS


@pytest.mark.parametrize("path", DOCUMENTS)
def test_if_none_match_gets_304_with_the_same_headers_and_no_body(
    client: Client, signing_keys: Any, path: str
):
    full = client.get(path)
    for if_none_match in (full["ETag"], "W/" + full["ETag"], f'"other", {full["ETag"]}', "*"):
        response = client.get(path, HTTP_IF_NONE_MATCH=if_none_match)
        assert response.status_code == 304, if_none_match
        assert response.content == b""
        for header in ("ETag", "Cache-Control", "Access-Control-Allow-Origin", "X-Content-Type-Options"):
            assert response[header] == full[header], header
        assert "frame-ancestors 'none'" in response["Content-Security-Policy"]


@pytest.mark.parametrize("path", DOCUMENTS)
def test_a_stale_etag_gets_the_full_document(client: Client, signing_keys: Any, path: str):
    response = client.get(path, HTTP_IF_NONE_MATCH='"0123456789abcdef0123456789abcdef"')
    assert response.status_code == 200
    assert json.loads(response.content)


def test_head_gets_the_headers_without_the_body(client: Client, signing_keys: Any):
    full = client.get("/jwks.json")
    head = client.head("/jwks.json")
    assert head.status_code == 200
    assert head.content == b""
    assert head["ETag"] == full["ETag"]
    assert head["Content-Type"] == full["Content-Type"]


def test_the_jwks_etag_changes_when_a_key_is_added(client: Client, signing_keys: Any):
    before = client.get("/jwks.json")
    new = signing_key_rotate(algorithm="ES256", publish_ahead=timedelta(hours=1))
    after = client.get("/jwks.json", HTTP_IF_NONE_MATCH=before["ETag"])
    assert after.status_code == 200
    assert after["ETag"] != before["ETag"]
    assert new.kid in kids(after.content)


# --- The lean WSGI path ----------------------------------------------------------------------


def comparable(headers: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Headers to compare; each answer's own request id is only checked to be there once."""
    assert [name.lower() for name, _value in headers].count("x-request-id") == 1
    return sorted((name.lower(), value) for name, value in headers if name.lower() != "x-request-id")


@pytest.mark.parametrize("path", DOCUMENTS)
@pytest.mark.parametrize("scheme", ["http", "https"])
def test_lean_path_answers_exactly_as_the_full_stack(lean: Any, path: str, scheme: str):
    app, django_app = lean
    reference = call(WSGIHandler(), environ(path) | {"wsgi.url_scheme": scheme})
    first = call(app, environ(path) | {"wsgi.url_scheme": scheme})  # through Django, stored
    assert django_app.calls == 1
    second = call(app, environ(path) | {"wsgi.url_scheme": scheme})
    assert django_app.calls == 1  # answered before Django
    for answer in (first, second):
        assert answer[0] == reference[0] == "200 OK"
        assert comparable(answer[1]) == comparable(reference[1])
        assert answer[2] == reference[2]


def test_lean_path_keeps_hsts_apart_from_plain_http(settings: Any, signing_keys: Any):
    settings.SECURE_HSTS_SECONDS = 3600  # read by SecurityMiddleware when the handler loads
    app = LeanProtocolPath(WSGIHandler())
    call(app, environ("/jwks.json"))
    plain = dict(call(app, environ("/jwks.json"))[1])
    secure = dict(call(app, environ("/jwks.json") | {"wsgi.url_scheme": "https"})[1])
    secure_again = dict(call(app, environ("/jwks.json") | {"wsgi.url_scheme": "https"})[1])
    assert "Strict-Transport-Security" not in plain
    assert secure["Strict-Transport-Security"].startswith("max-age=3600")
    assert secure_again.pop("X-Request-ID") != secure.pop("X-Request-ID")  # each answer its own
    assert secure_again == secure


def test_lean_path_304_and_head(lean: Any):
    app, django_app = lean
    status, headers, body = call(app, environ("/jwks.json"))
    etag = dict(headers)["ETag"]
    calls = django_app.calls

    status, headers, body = call(app, environ("/jwks.json", IF_NONE_MATCH=etag))
    assert status == "304 Not Modified" and body == b""
    names = {name.lower() for name, _ in headers}
    assert {"etag", "cache-control", "access-control-allow-origin", "content-security-policy"} <= names
    assert "content-type" not in names and "content-length" not in names

    status, headers, body = call(app, environ("/jwks.json", "HEAD"))
    assert status == "200 OK" and body == b""
    assert int(dict(headers)["Content-Length"]) > 0
    assert django_app.calls == calls  # both answered before Django


def test_lean_path_still_rejects_a_host_not_allowed(lean: Any):
    app, django_app = lean
    call(app, environ("/jwks.json"))
    status, _, _ = call(app, environ("/jwks.json", host="evil.example"))
    assert status.startswith("400")
    assert django_app.calls == 2  # Django answered it


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE"])
def test_lean_path_leaves_other_methods_to_django(lean: Any, method: str):
    app, django_app = lean
    call(app, environ("/jwks.json"))
    status, _, _ = call(app, environ("/jwks.json", method))
    assert status == call(WSGIHandler(), environ("/jwks.json", method))[0]  # 403 (CSRF) as ever
    assert django_app.calls == 2


def test_lean_path_leaves_other_paths_to_django(lean: Any):
    app, django_app = lean
    for _ in range(2):
        status, _, _ = call(app, environ("/healthz"))
        assert status == "200 OK"
    assert django_app.calls == 2


def test_lean_path_shows_a_rotated_in_key_at_once_in_this_process(lean: Any):
    app, _ = lean
    before = kids(call(app, environ("/jwks.json"))[2])
    new = signing_key_rotate(algorithm="RS256", publish_ahead=timedelta(hours=1))
    after = kids(call(app, environ("/jwks.json"))[2])
    assert new.kid in after and before <= after
    # Published, but not signing yet: the old key still signs.
    assert keys.active_signing_key("RS256").kid != new.kid


def test_lean_path_drops_an_expired_key_at_its_expiry_without_any_clear(lean: Any, monkeypatch: Any):
    app, django_app = lean
    started = time.monotonic(), timezone.now()
    elapsed = [0.0]
    monkeypatch.setattr("identity.keys.time", SimpleNamespace(monotonic=lambda: started[0] + elapsed[0]))
    monkeypatch.setattr(
        "identity.keys.timezone", SimpleNamespace(now=lambda: started[1] + timedelta(seconds=elapsed[0]))
    )
    old = keys.active_signing_key("ES256").kid
    signing_key_rotate(algorithm="ES256", publish_ahead=timedelta(0))
    expires_at = SigningKey.objects.get(kid=old).expires_at
    # The margin is the longest token lifetime: make it 5 s from "now" for the test.
    SigningKey.objects.filter(kid=old).update(expires_at=started[1] + timedelta(seconds=5))
    keys.clear_key_cache()
    assert expires_at is not None
    assert old in kids(call(app, environ("/jwks.json"))[2])
    elapsed[0] = 4.9
    calls = django_app.calls
    assert old in kids(call(app, environ("/jwks.json"))[2])
    assert django_app.calls == calls  # still the stored copy
    elapsed[0] = 5.1
    assert old not in kids(call(app, environ("/jwks.json"))[2])  # no clear_key_cache(): the cache knew


# --- Across two processes sharing the cache ---------------------------------------------------

CHILD = r"""
import io, json, os, sys
sys.argv = ["lean-path-child", "test"]  # the test settings (cache key prefixes), as in the parent
import django
django.setup()
from config.lean_path import LeanProtocolPath
from django.core.handlers.wsgi import WSGIHandler

app = LeanProtocolPath(WSGIHandler())
for line in sys.stdin:
    env = {"REQUEST_METHOD": "GET", "PATH_INFO": "/jwks.json", "SCRIPT_NAME": "", "QUERY_STRING": "",
           "SERVER_NAME": "testserver", "SERVER_PORT": "80", "HTTP_HOST": "testserver",
           "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(b""), "wsgi.errors": sys.stderr}
    body = b"".join(app(env, lambda status, headers, *exc: None))
    print(json.dumps(sorted(key["kid"] for key in json.loads(body)["keys"])), flush=True)
"""


def database_url() -> str:
    config = connection.settings_dict
    if config["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{config['NAME']}"
    return (
        f"postgres://{config['USER']}:{config['PASSWORD']}@{config['HOST']}:{config['PORT']}/{config['NAME']}"
    )


@pytest.mark.django_db(transaction=True)
def test_another_process_sees_a_key_change_within_the_version_check_interval(signing_keys: Any):
    env = {**os.environ, "DATABASE_URL": database_url(), "DJANGO_SETTINGS_MODULE": "config.settings"}
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=settings.BASE_DIR,
    )
    assert child.stdin is not None and child.stdout is not None

    def child_kids() -> set[str]:
        child.stdin.write("jwks\n")  # type: ignore[union-attr]
        child.stdin.flush()  # type: ignore[union-attr]
        return set(json.loads(child.stdout.readline()))  # type: ignore[union-attr]

    def child_sees(predicate: Any) -> bool:
        # Well under the 30 s cache time: only the shared version can make the child re-read.
        deadline = time.monotonic() + 2 * keys.KEYSET_VERSION_CHECK_SECONDS + 3
        while time.monotonic() < deadline:
            if predicate(child_kids()):
                return True
            time.sleep(0.2)
        return False

    try:
        before = child_kids()
        assert before == {key.kid for key in SigningKey.objects.all()}
        new = signing_key_rotate(algorithm="RS256", publish_ahead=timedelta(hours=1))
        assert child_sees(lambda kids: new.kid in kids)

        # A key withdrawn at once (its expiry moved to now, then announced) leaves the
        # other process's JWKS within the same interval.
        withdrawn = next(iter(before))
        SigningKey.objects.filter(kid=withdrawn).update(expires_at=timezone.now())
        announce_key_change()
        assert child_sees(lambda kids: withdrawn not in kids)
    finally:
        child.stdin.close()
        child.wait(timeout=30)
