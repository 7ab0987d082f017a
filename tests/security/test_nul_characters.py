"""A NUL character in a value that reaches a query: PostgreSQL refuses it in text (the driver
raises), SQLite stores it. Each place below answered 500 on PostgreSQL (found by
tests/fuzz/test_openapi_schemathesis.py); now the same clear 4xx as any unknown value."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from tests.conftest import open_session, staff_mfa_login

pytestmark = pytest.mark.django_db


def test_the_cookie_api_treats_a_nul_client_id_as_unknown(client: Client) -> None:
    response = client.post(
        "/consent/api/v1/cookie/attach",
        {
            "client_id": "o\x000",
            "browser_id": "1e75d0af-74ff-3a39-8943-4f09fd91e70d",
            "browser_secret": "x" * 43,
            "link_ticket": "vary",
        },
        content_type="application/json",
    )
    assert response.status_code == 400
    assert response.json()["code"] == "unknown_client"
    assert client.get("/consent/api/v1/cookie/config", {"client_id": "a\x00b"}).status_code == 400


def test_withdrawing_a_service_with_a_nul_in_its_id_is_not_found(resident: Any) -> None:
    browser = open_session(Client(), resident)
    assert browser.post("/compte/services/a%00b/retirer/").status_code == 404


def test_the_dpo_filters_refuse_a_nul_character(make_resident: Any) -> None:
    dpo = make_resident("dpo@nantesmetropole.fr")
    dpo.is_staff = True
    dpo.save(update_fields=["is_staff"])
    dpo.groups.add(Group.objects.get_or_create(name="dpo")[0])
    console = staff_mfa_login(Client(), dpo)
    response = console.get("/dpo/api/v1/events", {"partner": "a\x00b"})
    assert response.status_code == 400, response.content[:200]
