"""Mon compte, "Services connectés" (issue 11): the partners that received the resident's data,
and "Retirer l'accès".

After a real authorization code flow the page lists the partner: the claims in plain words,
since when, last used, the consent (event, notice version) and its receipt. Withdrawing, in
one transaction: a `withdrawn` event by the resident in the ledger, the partner's tokens
revoked (userinfo 401, introspection inactive, refresh refused), a back-channel logout in
the outbox; the next authorization asks again. CSRF, POST only, only the resident's own
partners; nothing is done when the ledger cannot be written.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from django.db import transaction
from django.test import Client as BrowserClient
from django.utils import timezone

from connectors.models import OutboxMessage
from consent.models import ActorType, ConsentState
from consent.selectors import consent_is_granted, events_search
from identity.models import AuditEvent, SessionClient
from identity.oidc.backchannel import KIND
from identity.oidc.sharing import sharing_purpose_code
from tests.conftest import PASSWORD, OIDCFlow
from tests.oidc.conftest import (
    basic,
    complete_flow,
    expected_sub,
    is_consent_page,
    post_token,
    userinfo,
)
from tests.security.test_ledger_tampering import execute, unlock

pytestmark = pytest.mark.django_db

SCOPES = ["openid", "profile", "email"]
PAGE = "/compte/services/"
BCL_URI = "https://rp.example.org/backchannel-logout"


def withdraw_url(client_id: str) -> str:
    return f"/compte/services/{client_id}/retirer/"


def purpose(rp: Any) -> str:
    code = sharing_purpose_code(rp.client, SCOPES)
    assert code
    return code


@pytest.fixture
def bcl_rp(make_client: Any) -> Any:
    # Also a resource server, so that it may introspect the tokens it holds (RFC 7662).
    return make_client(name="Billetterie culturelle", backchannel_logout_uri=BCL_URI, is_resource_server=True)


@pytest.fixture
def shared(signed_in: BrowserClient, bcl_rp: Any) -> tuple[OIDCFlow, dict[str, Any]]:
    """The resident allowed the partner (consent screen) and the partner holds tokens."""
    flow = OIDCFlow(signed_in, bcl_rp)
    return flow, complete_flow(flow)


def introspect(resource_server: Any, token: str) -> dict[str, Any]:
    return (
        BrowserClient()
        .post(
            "/introspect",
            {"token": token},
            HTTP_AUTHORIZATION=basic(resource_server.client_id, resource_server.secret),
        )
        .json()
    )


def test_the_account_page_links_to_the_connected_services(signed_in: BrowserClient) -> None:
    assert f'href="{PAGE}"' in signed_in.get("/compte/").content.decode()


def test_the_page_needs_sign_in(db: Any) -> None:
    response = BrowserClient().get(PAGE)
    assert response.status_code == 302 and "/connexion/" in response["Location"]


def test_nothing_shared_says_so(signed_in: BrowserClient) -> None:
    page = signed_in.get(PAGE)
    assert page.status_code == 200
    assert "Aucun service partenaire n'a reçu d'informations de votre compte." in page.content.decode()


def test_the_page_lists_the_partner_its_claims_its_consent_and_receipt(shared: Any, resident: Any) -> None:
    flow, _tokens = shared
    html = flow.browser.get(PAGE).content.decode()
    assert flow.rp.client.name in html
    for text in ("Vos nom et prénom", "Votre adresse e-mail", "adresse e-mail", "prénom", "accès autorisé"):
        assert text in html
    given = events_search(user=resident, purpose_code=purpose(flow.rp)).get()
    assert str(given.id) in html
    receipt = f"/consent/recus/{given.id}.jws"
    assert f'href="{receipt}"' in html
    assert "version 1" in html  # the notice the consent was given under
    assert "Dernière utilisation" in html and "aucune enregistrée" not in html
    assert f'action="{withdraw_url(flow.rp.client_id)}"' in html
    # The receipt link works for the resident.
    download = flow.browser.get(receipt)
    assert download.status_code == 200 and download["Content-Type"] == "application/jose"


def test_a_partner_refused_and_never_allowed_is_not_listed(
    make_client: Any, signed_in: BrowserClient
) -> None:
    rp = make_client(name="Piscines")
    page = OIDCFlow(signed_in, rp).authorize()
    signed_in.post("/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"})
    assert "Piscines" not in signed_in.get(PAGE).content.decode()


def test_withdrawing_revokes_records_logs_out_and_asks_again(shared: Any, resident: Any) -> None:
    flow, tokens = shared
    resource_server = flow.rp
    assert userinfo(tokens["access_token"]).status_code == 200
    assert introspect(resource_server, tokens["access_token"])["active"] is True
    assert SessionClient.objects.filter(client=flow.rp.client).exists()

    response = flow.browser.post(withdraw_url(flow.rp.client_id))
    assert response.status_code == 302 and response["Location"].startswith(PAGE)

    # The ledger: a `withdrawn` event, recorded by the resident from the account page.
    events = list(events_search(user=resident, purpose_code=purpose(flow.rp)))
    assert [e.event_type for e in events] == ["given", "withdrawn"]
    assert events[1].actor_type == ActorType.RESIDENT and events[1].collection_method == "web_form"
    assert events[1].partner_client_id == flow.rp.client_id
    assert not consent_is_granted(user=resident, purpose_code=purpose(flow.rp))

    # The tokens: userinfo refuses, introspection says inactive, refresh fails.
    refused = userinfo(tokens["access_token"])
    assert refused.status_code == 401
    assert 'error="invalid_token"' in refused["WWW-Authenticate"]
    assert introspect(resource_server, tokens["access_token"]) == {"active": False}
    refreshed = post_token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]},
        auth=basic(flow.rp.client_id, flow.rp.secret),
    )
    assert refreshed.status_code == 400 and refreshed.json()["error"] == "invalid_grant"

    # The partner is told: a back-channel logout for the session it was part of.
    message = OutboxMessage.objects.get(kind=KIND)
    assert message.destination == BCL_URI and message.partner == flow.rp.client_id
    assert message.payload["sid"] and message.payload["client_id"] == flow.rp.client_id
    assert not SessionClient.objects.filter(client=flow.rp.client).exists()

    # An audit row without personal data.
    audit = AuditEvent.objects.get(event="oidc.sharing_withdrawn")
    assert audit.subject_user_id == resident.pk and audit.client_id == flow.rp.client_id
    assert audit.data["ledger_events"] == [str(events[1].id)]
    assert resident.email not in str(audit.data)

    # The page says it; the next authorization request asks again.
    page = flow.browser.get(PAGE).content.decode()
    assert "accès retiré" in page and "Accord retiré le" in page
    assert f'href="/consent/recus/{events[1].id}.jws"' in page
    assert f'action="{withdraw_url(flow.rp.client_id)}"' not in page
    assert is_consent_page(flow.authorize())


def test_a_token_issued_before_and_used_after_gets_no_claims_when_consent_is_given_again(
    shared: Any, resident: Any
) -> None:
    """After withdrawal, a new consent and new tokens work as the first time."""
    flow, _tokens = shared
    flow.browser.post(withdraw_url(flow.rp.client_id))
    fresh = complete_flow(flow)
    info = userinfo(fresh["access_token"]).json()
    assert info["email"] == resident.email
    assert [e.event_type for e in events_search(user=resident, purpose_code=purpose(flow.rp))] == [
        "given",
        "withdrawn",
        "given",
    ]


def test_withdrawing_twice_records_nothing_more(shared: Any, resident: Any) -> None:
    flow, _tokens = shared
    flow.browser.post(withdraw_url(flow.rp.client_id))
    again = flow.browser.post(withdraw_url(flow.rp.client_id), follow=True)
    assert "était déjà retiré" in again.content.decode()
    assert events_search(user=resident, event_types=["withdrawn"]).count() == 1
    assert OutboxMessage.objects.filter(kind=KIND).count() == 1


def test_withdrawal_needs_the_csrf_token(shared: Any, resident: Any) -> None:
    flow, tokens = shared
    strict = BrowserClient(enforce_csrf_checks=True)
    strict.cookies = flow.browser.cookies
    assert strict.post(withdraw_url(flow.rp.client_id)).status_code == 403
    assert not events_search(user=resident, event_types=["withdrawn"]).exists()
    assert userinfo(tokens["access_token"]).status_code == 200


def test_a_get_does_not_withdraw(shared: Any, resident: Any) -> None:
    flow, tokens = shared
    assert flow.browser.get(withdraw_url(flow.rp.client_id)).status_code == 405
    assert not events_search(user=resident, event_types=["withdrawn"]).exists()
    assert userinfo(tokens["access_token"]).status_code == 200


def test_an_unknown_client_is_404(signed_in: BrowserClient) -> None:
    assert signed_in.post(withdraw_url("no-such-client")).status_code == 404


def test_another_residents_partner_cannot_be_withdrawn(
    shared: Any, make_resident: Any, make_client: Any, resident: Any
) -> None:
    """A partner only another resident shared with: 404, and the other resident keeps it."""
    flow, tokens = shared
    other = make_resident("dominique@example.org")
    browser = BrowserClient()
    assert browser.post("/connexion/", {"username": other.email, "password": PASSWORD}).status_code == 302
    assert browser.post(withdraw_url(flow.rp.client_id)).status_code == 404
    assert not events_search(event_types=["withdrawn"]).exists()
    assert userinfo(tokens["access_token"]).status_code == 200


def test_nothing_is_done_when_the_ledger_cannot_be_written(shared: Any, resident: Any) -> None:
    """An altered ledger head (consent.ledger.head_check): no event, no token revoked, no
    message, an audit of the incident, and a page saying nothing changed."""
    flow, tokens = shared
    events_before = events_search().count()
    execute("UPDATE consent_ledgerhead SET root_hash = %s WHERE id = 1", [b"\x00" * 32])
    response = flow.browser.post(withdraw_url(flow.rp.client_id))
    assert response.status_code == 503
    assert "rien n'a été changé" in response.content.decode()
    assert events_search().count() == events_before
    assert userinfo(tokens["access_token"]).status_code == 200
    assert not OutboxMessage.objects.filter(kind=KIND).exists()
    assert SessionClient.objects.filter(client=flow.rp.client).exists()
    assert not AuditEvent.objects.filter(event="oidc.sharing_withdrawn").exists()
    assert AuditEvent.objects.filter(event="consent.ledger_tampered").exists()


def test_an_internal_service_is_listed_without_a_withdraw_button(
    make_client: Any, signed_in: BrowserClient, settings: Any
) -> None:
    internal = make_client(name="Déchèteries", is_internal=True)
    complete_flow(OIDCFlow(signed_in, internal))
    html = signed_in.get(PAGE).content.decode()
    assert "Déchèteries" in html and "service de Nantes Métropole" in html
    assert "Votre accord n'est donc pas demandé" in html
    assert f"mailto:{settings.CONSENT_CONTROLLER['email']}" in html
    assert withdraw_url(internal.client_id) not in html
    assert signed_in.post(withdraw_url(internal.client_id)).status_code == 404


def test_the_page_in_english(shared: Any) -> None:
    flow, _tokens = shared
    flow.browser.cookies["language"] = "en"
    html = flow.browser.get(PAGE).content.decode()
    assert "Connected services" in html and "Withdraw access" in html


def test_a_code_not_yet_redeemed_dies_with_the_withdrawal(signed_in: BrowserClient, bcl_rp: Any) -> None:
    flow = OIDCFlow(signed_in, bcl_rp)
    complete_flow(flow)
    code = flow.get_code()  # consent in force: no screen, a code the partner has not redeemed
    assert signed_in.post(withdraw_url(bcl_rp.client_id)).status_code == 302
    response = flow.token(code)
    assert response.status_code == 400 and response.json()["error"] == "invalid_grant"


def test_prompt_none_after_withdrawal_is_consent_required(shared: Any) -> None:
    flow, _tokens = shared
    flow.browser.post(withdraw_url(flow.rp.client_id))
    response = flow.authorize(prompt="none")
    assert parse_qs(urlsplit(response["Location"]).query)["error"] == ["consent_required"]


def test_without_an_open_session_the_logout_names_the_resident_only(shared: Any, resident: Any) -> None:
    """Tokens outlive the session (refresh): the partner is told by `sub`, without `sid`."""
    flow, _tokens = shared
    SessionClient.objects.filter(client=flow.rp.client).delete()
    flow.browser.post(withdraw_url(flow.rp.client_id))
    message = OutboxMessage.objects.get(kind=KIND)
    assert message.payload["sid"] == "" and message.payload["sub"] == expected_sub(flow.rp, resident)


def test_a_lapsed_consent_can_still_be_withdrawn(shared: Any, resident: Any) -> None:
    """A consent past its validity no longer releases claims, but it still stands in the
    ledger until the resident withdraws it (and the partner still holds tokens)."""
    flow, tokens = shared
    ConsentState.objects.filter(purpose__code=purpose(flow.rp)).update(
        valid_until=timezone.now() - timedelta(days=1)
    )
    html = flow.browser.get(PAGE).content.decode()
    assert "accord à renouveler" in html and withdraw_url(flow.rp.client_id) in html
    flow.browser.post(withdraw_url(flow.rp.client_id))
    assert events_search(user=resident, event_types=["withdrawn"]).count() == 1
    assert userinfo(tokens["access_token"]).status_code == 401


def test_an_altered_ledger_row_is_not_shown(shared: Any, resident: Any) -> None:
    """The page shows and links receipts of ledger rows: an altered one (issue 9, finding 10)
    gives a readable 503 page, not altered data and not a 500."""
    flow, _tokens = shared
    given = events_search(user=resident, purpose_code=purpose(flow.rp)).get()
    savepoint = transaction.savepoint()
    try:
        unlock()
        sql = "UPDATE consent_ledgerevent SET collection_method = %s WHERE seq = %s"
        execute(sql, ["telepathy", given.seq])
        response = flow.browser.get(PAGE)
        assert response.status_code == 503
        html = response.content.decode()
        assert "momentanément illisible" in html and str(given.id) not in html
    finally:
        transaction.savepoint_rollback(savepoint)
