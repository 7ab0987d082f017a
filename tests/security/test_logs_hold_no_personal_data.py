"""No personal data reaches the logs (issue 16, "Observability"): a resident with
recognisable values goes through sign-in (a wrong password first), their personal details,
an authorization with token, userinfo, refresh, introspection and revocation, a consent,
an export and an erasure, with every logger at DEBUG through the production JSON formatter
(oauthlib and django-oauth-toolkit stay capped at WARNING, as configured). None of the
values, nor any password, code, token or link secret, appears in what was written."""

from __future__ import annotations

import io
import json
import logging
import re
from datetime import timedelta
from typing import Any

import pytest
from django.conf import settings
from django.core import mail
from django.test import Client
from django.utils import timezone

from common.request_log import JsonFormatter, RequestIdFilter
from connectors.models import OutboxMessage
from connectors.outbox import relay_once
from consent import erasure
from consent.models import RightsRequest
from consent.rights_requests import KIND_EXPORT
from identity.models import User
from tests.conftest import REDIRECT_URI, OIDCFlow, deliver_emails

pytestmark = pytest.mark.django_db

EMAIL = "zebulon.traceable@example.org"
PASSWORD = "Tr4ceable-Passw0rd-Zq!"
WRONG_PASSWORD = "Wr0ng-Tr4ceable-Guess!"
GIVEN, FAMILY = "Zébulonix", "Traçabilitour"
PHONE_DIGITS = "612345678"
STREET = "17 rue du Traceable"
EXPORT_LINK = re.compile(r"/compte/export/telecharger/([^/\s]+)/")


@pytest.fixture
def written() -> Any:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    handler.setLevel(logging.DEBUG)
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield stream
    root.removeHandler(handler)
    root.setLevel(previous)


def test_a_residents_whole_journey_leaves_no_personal_data_in_the_logs(
    client: Client, make_resident: Any, make_client: Any, written: io.StringIO
):
    resident = make_resident(EMAIL, password=PASSWORD, given_name=GIVEN, family_name=FAMILY)
    rp = make_client(
        scopes=["openid", "profile", "email", "phone", "address"],
    )
    secrets_seen: list[str] = [
        EMAIL,
        EMAIL.split("@")[0],
        PASSWORD,
        WRONG_PASSWORD,
        GIVEN,
        FAMILY,
        PHONE_DIGITS,
        STREET,
    ]

    # Sign-in, a wrong password first.
    assert client.post("/connexion/", {"username": EMAIL, "password": WRONG_PASSWORD}).status_code == 200
    assert client.post("/connexion/", {"username": EMAIL, "password": PASSWORD}).status_code == 302
    secrets_seen.append(client.cookies[settings.SESSION_COOKIE_NAME].value)

    # Personal details.
    response = client.post(
        "/compte/informations/modifier/",
        {
            "given_name": GIVEN,
            "family_name": FAMILY,
            "phone_number": "06 12 34 56 78",
            "street_address": STREET,
            "commune": "44109",
            "other_locality": "",
            "postal_code": "44000",
        },
    )
    assert response.status_code == 302, response.content[:300]

    # Authorization, token, userinfo, refresh, introspection, revocation; and failures.
    flow = OIDCFlow(client, rp)
    code = flow.get_code(scope="openid profile email phone address")
    tokens = flow.token(code).json()
    assert "access_token" in tokens, tokens
    secrets_seen += [code, tokens["access_token"], tokens["refresh_token"], tokens["id_token"], flow.verifier]
    api = Client()
    claims = api.get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}").json()
    assert claims.get("family_name") == FAMILY, claims
    refreshed = api.post(
        "/token",
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        HTTP_AUTHORIZATION=rp.basic_auth(),
    ).json()
    assert "access_token" in refreshed, refreshed
    secrets_seen += [refreshed["access_token"], refreshed["refresh_token"], rp.secret]
    api.post("/introspect", {"token": refreshed["access_token"]}, HTTP_AUTHORIZATION=rp.basic_auth())
    api.post("/revoke", {"token": refreshed["refresh_token"]}, HTTP_AUTHORIZATION=rp.basic_auth())
    api.get("/userinfo", HTTP_AUTHORIZATION=f"Bearer {tokens['access_token']}x")  # invalid token
    api.post(
        "/token",
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT_URI,
            "code_verifier": flow.verifier,
        },
        HTTP_AUTHORIZATION="Basic eA==",
    )

    assert flow.token(code).status_code == 400  # a replayed code (revokes what it issued)

    # A consent, then the export of everything and its download.
    assert (
        client.post("/compte/consentements/service-news-email/decision/", {"decision": "grant"}).status_code
        == 302
    )
    mail.outbox.clear()
    assert client.post("/compte/export/").status_code == 302
    assert relay_once(kinds=[KIND_EXPORT]).delivered == 1
    deliver_emails()
    link = next(EXPORT_LINK.search(m.body) for m in mail.outbox if EXPORT_LINK.search(m.body))
    secrets_seen.append(link.group(1))
    assert client.post(link.group(0)).status_code == 200

    # The erasure, run by the worker once the grace period is over.
    assert client.post("/compte/supprimer/", {"confirm": "yes"}).status_code == 302
    past = timezone.now() - timedelta(seconds=1)
    RightsRequest.objects.filter(user=resident, kind="erasure").update(not_before=past)
    OutboxMessage.objects.filter(kind=erasure.KIND_ERASURE).update(next_attempt_at=past)
    relay_once(kinds=[erasure.KIND_ERASURE])
    assert not User.objects.filter(pk=resident.pk).exists()
    deliver_emails()

    text = written.getvalue()
    lines = [json.loads(line) for line in text.splitlines()]
    assert len([line for line in lines if line["logger"] == "cum.access"]) >= 15  # the journey was logged
    leaked = [value for value in secrets_seen if value and value.casefold() in text.casefold()]
    assert not leaked, [value[:12] + "…" for value in leaked]
