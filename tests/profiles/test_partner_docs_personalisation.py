"""The curl examples of docs/partners.md, "Personalisation", run against the API as written
(placeholders filled in): the documented paths, headers and bodies are the ones we accept."""

from __future__ import annotations

import json
import re
import shlex
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client as BrowserClient
from django.utils import timezone

from tests.conftest import OIDCFlow
from tests.oidc.conftest import complete_flow
from tests.oidc.conftest import signing_keys as signing_keys  # faster keys, re-exported
from tests.profiles.conftest import BROWSING, decide

pytestmark = pytest.mark.django_db

DOCS = Path(__file__).resolve().parents[2] / "docs" / "partners.md"
ORIGIN = "https://www.example.org"
SCOPES = "openid territory interests accessibility"


def curl_examples() -> list[list[str]]:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("\n## Personalisation\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```sh\n(.*?)```", section, re.S)
    commands = []
    for block in blocks:
        lines = [line for line in block.splitlines() if not line.startswith("#")]
        commands.append(shlex.split(" ".join(line.rstrip("\\") for line in lines)))
    return commands


def run(command: list[str], values: dict[str, str]) -> Any:
    def fill(text: str) -> str:
        for placeholder, value in values.items():
            text = text.replace(placeholder, value)
        return text

    assert command[0] == "curl"
    args = iter(command[1:])
    method, url, headers, data = "GET", "", {}, None
    for arg in args:
        if arg == "-X":
            method = next(args)
        elif arg == "-H":
            name, _sep, value = fill(next(args)).partition(": ")
            headers["HTTP_" + name.upper().replace("-", "_")] = value
        elif arg == "-d":
            data = json.loads(fill(next(args)))
        else:
            url = fill(arg)
    path = url.removeprefix("https://<issuer>")
    content_type = headers.pop("HTTP_CONTENT_TYPE", "application/json")
    http = BrowserClient()
    if method == "POST":
        return http.post(path, json.dumps(data), content_type=content_type, **headers)
    return http.get(path, **headers)


def test_the_documented_calls_work(make_client: Any, signed_in: BrowserClient, resident: Any) -> None:
    portal = make_client(name="Portail", scopes=SCOPES.split())
    portal.client.allowed_origins = ORIGIN
    portal.client.save(update_fields=["allowed_origins"])
    decide(resident, BROWSING, True)
    choice = (
        BrowserClient()
        .post(
            f"/consent/api/v1/cookie/choices?client_id={portal.client_id}",
            json.dumps({"client_id": portal.client_id, "choices": {BROWSING: True}}),
            content_type="application/json",
            HTTP_ORIGIN=ORIGIN,
        )
        .json()
    )
    token = complete_flow(OIDCFlow(signed_in, portal), scope=SCOPES)["access_token"]
    values = {
        "YOUR_CLIENT_ID": portal.client_id,
        "<browserId>": choice["browser_id"],
        "<secret>": choice["browser_secret"],
        "<the resident's access token>": token,
        "<access token>": token,
        # The documented date, moved to a minute ago (a view is accepted up to 7 days late).
        "2026-12-05T10:15:00+01:00": (timezone.now() - timedelta(minutes=1)).isoformat(),
    }
    commands = curl_examples()
    assert len(commands) == 4
    statuses = []
    for command in commands:
        response = run(command, values)
        statuses.append(response.status_code)
        assert response["Content-Type"] == "application/json", response.content[:300]
    assert statuses == [202, 202, 200, 200]
