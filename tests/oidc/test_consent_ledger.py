"""The consent screen and the release of claims, backed by the consent ledger (issue 4,
"The consent screen"; OIDC Core §3.1.2.4 consent, §3.1.2.6 consent_required, §5.3 userinfo).

- Before a partner receives claims the first time (and whenever it asks for a scope set not
  granted), the resident sees who asks, for what and why, with Allow and Deny side by side.
- The answer is a ledger event (given / refused, collection method oidc_consent), written in
  the transaction that issues the code: a failure writes nothing.
- Claims are released at token and userinfo time only while the ledger grants them: a
  withdrawal stops them at once (userinfo answers `sub` alone) and the screen comes back.
- Internal services (public task) see no consent screen and write no event (their one-time
  information page is tested in test_internal_service_notice.py).
"""

from __future__ import annotations

import base64
import json
from datetime import timedelta
from typing import Any
from unittest import mock

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors

from consent.models import Purpose
from consent.selectors import consent_is_granted, events_search
from consent.services import consent_record
from identity.oidc.access_tokens import decode, resident_and_consent
from identity.oidc.request_validator import Validator
from identity.oidc.sharing import sharing_purpose_code
from tests.conftest import REDIRECT_URI, OIDCFlow, verify_id_token
from tests.oidc.conftest import (
    complete_flow,
    expected_sub,
    is_consent_page,
    location_base,
    location_query,
    post_token,
    userinfo,
)

pytestmark = pytest.mark.django_db

SCOPES = ["openid", "profile", "email"]


def purpose(rp: Any) -> str:
    code = sharing_purpose_code(rp.client, SCOPES)
    assert code
    return code


def withdraw(resident: Any, rp: Any) -> None:
    consent_record(
        user=resident, purpose_code=purpose(rp), event_type="withdrawn", collection_method="web_form"
    )


def test_consent_page_shows_partner_claims_reasons_and_equal_choices(make_client, signed_in):
    rp = make_client(logo_uri="https://rp.example.org/logo.png", policy_uri="https://rp.example.org/privacy")
    page = OIDCFlow(signed_in, rp).authorize()
    assert is_consent_page(page)
    html = page.content.decode()
    assert rp.client.name in html
    assert 'src="https://rp.example.org/logo.png"' in html
    assert 'href="https://rp.example.org/privacy"' in html
    for text in ("Votre adresse e-mail", "pour vous écrire", "Vos nom et prénom", "adresse e-mail"):
        assert text in html
    assert 'href="/compte/"' in html  # where to withdraw later
    assert 'name="decision" value="allow"' in html and 'name="decision" value="deny"' in html


def test_allow_writes_a_given_event_and_the_next_request_skips_the_screen(flow, resident):
    page = flow.authorize()
    assert is_consent_page(page)
    code = flow.code_from(flow.approve(page))
    events = list(events_search(user=resident, purpose_code=purpose(flow.rp)))
    assert [(e.event_type, e.collection_method) for e in events] == [("given", "oidc_consent")]
    assert events[0].partner_client_id == flow.rp.client_id
    assert consent_is_granted(user=resident, purpose_code=purpose(flow.rp))
    assert flow.token(code).status_code == 200
    again = flow.authorize()
    assert again.status_code in (302, 303) and "code" in location_query(again)


def test_deny_writes_a_refused_event_and_answers_access_denied(flow, resident):
    page = flow.authorize()
    response = flow.browser.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    assert location_query(response)["error"] == ["access_denied"]
    events = list(events_search(user=resident, purpose_code=purpose(flow.rp)))
    assert [e.event_type for e in events] == ["refused"]
    assert not consent_is_granted(user=resident, purpose_code=purpose(flow.rp))
    assert is_consent_page(flow.authorize())  # asked again next time


def test_a_failed_code_issuance_writes_no_consent(flow, resident, monkeypatch):
    def broken(self: Any, *args: Any, **kwargs: Any) -> None:
        raise oauth2_errors.ServerError(description="database unavailable")

    monkeypatch.setattr(Validator, "save_authorization_code", broken)
    page = flow.authorize()
    response = flow.approve(page)
    assert location_base(response) == REDIRECT_URI
    assert "code" not in location_query(response)
    assert not events_search(user=resident).exists()
    assert not consent_is_granted(user=resident, purpose_code=purpose(flow.rp))


def test_a_token_live_is_not_consent_the_ledger_is(flow, resident, tokens):
    """The old heuristic (a live token stands for consent) is gone: the ledger decides."""
    withdraw(resident, flow.rp)
    assert is_consent_page(flow.authorize())


def test_withdrawal_stops_userinfo_claims_at_once(flow, resident, tokens):
    assert "email" in userinfo(tokens["access_token"]).json()
    withdraw(resident, flow.rp)
    info = userinfo(tokens["access_token"])
    assert info.status_code == 200
    assert info.json() == {"sub": expected_sub(flow.rp, resident)}


def test_withdrawal_between_code_and_token_keeps_claims_out_of_the_id_token(flow, resident):
    code = flow.get_code()
    withdraw(resident, flow.rp)
    body = flow.token(code).json()
    claims = verify_id_token(body["id_token"], flow.rp.client_id)
    assert claims["sub"] == expected_sub(flow.rp, resident)
    assert "email" not in claims and "given_name" not in claims


def test_withdrawal_stops_claims_on_refresh_too(flow, resident, tokens):
    withdraw(resident, flow.rp)

    refreshed = post_token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=flow.rp.basic_auth()
    )
    assert refreshed.status_code == 200, refreshed.content
    claims = verify_id_token(refreshed.json()["id_token"], flow.rp.client_id)
    assert "email" not in claims
    assert userinfo(refreshed.json()["access_token"]).json() == {"sub": expected_sub(flow.rp, resident)}


def test_after_withdrawal_prompt_none_is_consent_required(flow, resident, tokens):
    withdraw(resident, flow.rp)
    response = flow.authorize(prompt="none")
    assert location_query(response)["error"] == ["consent_required"]


def test_prompt_consent_shows_the_screen_although_granted(flow, tokens):
    assert is_consent_page(flow.authorize(prompt="consent"))


def test_asking_for_more_scopes_asks_again(make_client, signed_in):
    rp = make_client(scopes=["openid", "profile", "email", "phone"])
    flow = OIDCFlow(signed_in, rp)
    complete_flow(flow)
    assert is_consent_page(flow.authorize(scope="openid profile email phone"))


def test_internal_service_has_no_screen_no_event_and_gets_claims(make_client, signed_in, resident):
    rp = make_client(name="Espace citoyen", is_internal=True)
    flow = OIDCFlow(signed_in, rp)
    response = flow.authorize()
    assert not is_consent_page(response)
    if response.status_code == 200:  # the one-time information page: "Continuer"
        response = flow.continue_notice(response)
    assert response.status_code in (302, 303) and "code" in location_query(response)
    body = flow.token(flow.code_from(response)).json()
    assert not events_search(user=resident).exists()
    assert userinfo(body["access_token"]).json()["email"] == resident.email


# --- userinfo reads the ledger's answer with the token (one statement) -------------------------


def _past_then_future():
    return timezone.now() - timedelta(seconds=1), timezone.now() + timedelta(days=1)


@pytest.mark.parametrize(
    "events",
    [
        [],
        [("given", "future")],
        [("given", "past")],  # expired: no longer in force
        [("given", "future"), ("withdrawn", None)],
        [("withdrawn", None), ("given", "future")],
        [("refused", "future")],
        [("refused", "future"), ("given", "future")],
    ],
)
def test_userinfo_gives_the_ledgers_own_answer(make_client, make_resident, signed_in, resident, events):
    """The combined read (consent.gate.account_gate_sql) agrees with consent_is_granted."""
    rp = make_client(name="Médiathèques")
    tokens = complete_flow(OIDCFlow(signed_in, rp))
    # The flow recorded "given"; start each case from a clean withdrawal-free history.
    code = purpose(rp)
    past, future = _past_then_future()
    consent_record(user=resident, purpose_code=code, event_type="withdrawn", collection_method="web_form")
    for event_type, until in events:
        valid_until = {"past": past, "future": future}.get(until) if until else None
        if until == "past":
            # A consent that expired: recorded in force, then its end passes.
            with mock.patch.object(timezone, "now", return_value=past - (future - past)):
                consent_record(
                    user=resident,
                    purpose_code=code,
                    event_type=event_type,
                    collection_method="web_form",
                    valid_until=past,
                )
            continue
        consent_record(
            user=resident,
            purpose_code=code,
            event_type=event_type,
            collection_method="web_form",
            valid_until=valid_until,
        )
    expected = consent_is_granted(user=resident, purpose_code=code)
    claims = decode(tokens["access_token"], verify=False)
    user, granted = resident_and_consent(tokens["access_token"], claims, code)
    assert user == resident
    assert granted is expected
    with CaptureQueriesContext(connection) as queries:
        body = userinfo(tokens["access_token"]).json()
    assert ("email" in body) is expected
    assert len([q for q in queries.captured_queries if "SELECT" in q["sql"]]) == 1


def test_an_unproven_token_never_creates_a_purpose(flow, tokens, resident):
    """Finding a sharing's purpose may create it: only after the token is proven ours."""
    header, payload, signature = tokens["access_token"].split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data["scope"] = "openid email"  # a scope set no purpose exists for yet
    forged_payload = base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()
    before = Purpose.objects.count()
    response = userinfo(f"{header}.{forged_payload}.{signature}")
    assert response.status_code == 401
    assert Purpose.objects.count() == before
