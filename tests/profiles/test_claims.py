"""The scopes territory, interests and accessibility through the real OIDC flow (issue 12).

A partner registered with these scopes gets the claims `commune`, `interests` and
`accessibility` in the ID token and at userinfo only while BOTH are granted: the sharing
consent (the consent screen, a per-partner purpose) and the purpose the data is kept under
(`personalisation-declared` for the commune, the accessibility preferences and the declared
themes; `personalisation-browsing` for the inferred themes). Every direction is driven:
never granted, granted, withdrawn (either one: gone from the next userinfo answer), expired
(the consent's valid_until moved), and a notice renewed with a material change.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client as BrowserClient
from django.utils import timezone

from consent.models import ConsentState
from consent.purpose_data import DataSubject
from consent.selectors import purpose_by_code
from consent.services import consent_record, notice_publish
from identity.oidc.sharing import sharing_purpose_code, sharing_withdraw
from profiles.services import declared_update, interest_correct, page_view_record
from tests.conftest import OIDCFlow, verify_id_token
from tests.oidc.conftest import complete_flow, is_consent_page, userinfo
from tests.profiles.conftest import BROWSING, DECLARED, decide

pytestmark = pytest.mark.django_db

PROFILE_SCOPES = ["openid", "territory", "interests", "accessibility"]
SCOPE = " ".join(PROFILE_SCOPES)
PROFILE_CLAIMS = {"commune", "interests", "accessibility"}

DECLARED_PROFILE = {
    "commune": "44109",
    "quartier": "ile-de-nantes",
    "themes": ["culture"],
    "accessibility": ["larger-text", "easy-read"],
}
COMMUNE_CLAIM = {
    "insee_code": "44109",
    "name": "Nantes",
    "quartier": {"code": "ile-de-nantes", "name": "Île de Nantes"},
}
DECLARED_INTEREST = {"theme": "culture", "kind": "declared"}
INFERRED_INTEREST = {"theme": "sport", "kind": "inferred"}


@pytest.fixture
def partner(make_client: Any) -> Any:
    """The territorial portal, registered with the profiles scopes."""
    return make_client(name="Portail nantes.fr", scopes=PROFILE_SCOPES)


def _browse(user: Any, themes: list[str], site: str = "www.nantes.fr") -> None:
    page_view_record(subject=DataSubject(user_id=user.pk), site=site, themes=themes, viewed_at=timezone.now())


@pytest.fixture
def personalised(resident: Any, signing_keys: Any) -> Any:
    """The signed-in resident granted both personalisation purposes, declared a profile and
    browsed sport pages."""
    decide(resident, DECLARED, True)
    decide(resident, BROWSING, True)
    declared_update(user=resident, changes=DECLARED_PROFILE)
    _browse(resident, ["sport"])
    _browse(resident, ["sport", "culture"], site="www.reze.fr")
    return resident


def _sign_in_flow(signed_in: BrowserClient, partner: Any) -> dict[str, Any]:
    return complete_flow(OIDCFlow(signed_in, partner), scope=SCOPE)


def _id_token(tokens: dict[str, Any], partner: Any) -> dict[str, Any]:
    return verify_id_token(tokens["id_token"], partner.client_id)


def _profile_claims(claims: dict[str, Any]) -> dict[str, Any]:
    return {name: value for name, value in claims.items() if name in PROFILE_CLAIMS}


def _userinfo_claims(tokens: dict[str, Any]) -> dict[str, Any]:
    response = userinfo(tokens["access_token"])
    assert response.status_code == 200, response.content
    return _profile_claims(response.json())


def _expire(user: Any, purpose_code: str) -> None:
    """Time moved past the consent's end: its valid_until is in the past."""
    moved = ConsentState.objects.filter(subject__user=user, purpose__code=purpose_code).update(
        valid_until=timezone.now() - timedelta(seconds=1)
    )
    assert moved == 1


def _material_notice(purpose_code: str) -> None:
    notice_publish(
        purpose=purpose_by_code(purpose_code),
        text_fr="Nouvelle notice (changement important)",
        text_en="New notice (material change)",
        material=True,
    )


def _end(user: Any, purpose_code: str, how: str) -> None:
    if how == "withdrawn":
        decide(user, purpose_code, False)
    elif how == "expired":
        _expire(user, purpose_code)
    else:
        _material_notice(purpose_code)


ALL_CLAIMS = {
    "commune": COMMUNE_CLAIM,
    "accessibility": ["larger-text", "easy-read"],
    "interests": [DECLARED_INTEREST, INFERRED_INTEREST],
}


# --- both granted --------------------------------------------------------------------------------


def test_both_granted_release_the_claims_in_the_id_token_and_at_userinfo(
    personalised: Any, signed_in: BrowserClient, partner: Any
) -> None:
    tokens = _sign_in_flow(signed_in, partner)
    assert _profile_claims(_id_token(tokens, partner)) == ALL_CLAIMS
    assert _userinfo_claims(tokens) == ALL_CLAIMS


def test_only_the_scopes_granted_to_the_token_are_released(
    personalised: Any, signed_in: BrowserClient, partner: Any
) -> None:
    tokens = complete_flow(OIDCFlow(signed_in, partner), scope="openid territory")
    assert _profile_claims(_id_token(tokens, partner)) == {"commune": COMMUNE_CLAIM}
    assert _userinfo_claims(tokens) == {"commune": COMMUNE_CLAIM}


def test_a_theme_declared_and_inferred_is_released_once_as_declared(
    personalised: Any, signed_in: BrowserClient, partner: Any
) -> None:
    # culture was browsed too (www.reze.fr): it stays one declared interest.
    tokens = _sign_in_flow(signed_in, partner)
    assert _userinfo_claims(tokens)["interests"] == [DECLARED_INTEREST, INFERRED_INTEREST]


def test_a_not_interested_theme_is_never_released_as_inferred(
    personalised: Any, signed_in: BrowserClient, partner: Any
) -> None:
    tokens = _sign_in_flow(signed_in, partner)
    interest_correct(subject=DataSubject(user_id=personalised.pk), theme="sport")
    _browse(personalised, ["sport"])  # browsed again: the correction wins
    assert _userinfo_claims(tokens)["interests"] == [DECLARED_INTEREST]


# --- the underlying purpose never granted --------------------------------------------------------


def test_sharing_granted_but_no_personalisation_purpose_releases_nothing(
    resident: Any, signing_keys: Any, signed_in: BrowserClient, partner: Any
) -> None:
    tokens = _sign_in_flow(signed_in, partner)
    assert _profile_claims(_id_token(tokens, partner)) == {}
    assert _userinfo_claims(tokens) == {}
    assert set(userinfo(tokens["access_token"]).json()) == {"sub"}


def test_browsing_never_granted_releases_declared_themes_only(
    resident: Any, signing_keys: Any, signed_in: BrowserClient, partner: Any
) -> None:
    decide(resident, DECLARED, True)
    declared_update(user=resident, changes=DECLARED_PROFILE)
    tokens = _sign_in_flow(signed_in, partner)
    expected = {**ALL_CLAIMS, "interests": [DECLARED_INTEREST]}
    assert _profile_claims(_id_token(tokens, partner)) == expected
    assert _userinfo_claims(tokens) == expected


def test_declared_never_granted_releases_inferred_themes_only(
    resident: Any, signing_keys: Any, signed_in: BrowserClient, partner: Any
) -> None:
    decide(resident, BROWSING, True)
    _browse(resident, ["sport"])
    tokens = _sign_in_flow(signed_in, partner)
    assert _profile_claims(_id_token(tokens, partner)) == {"interests": [INFERRED_INTEREST]}
    assert _userinfo_claims(tokens) == {"interests": [INFERRED_INTEREST]}


# --- the sharing consent never granted, withdrawn, expired, renewed -------------------------------


def test_sharing_refused_on_the_consent_screen_gives_no_code_and_no_claim(
    personalised: Any, signed_in: BrowserClient, partner: Any
) -> None:
    flow = OIDCFlow(signed_in, partner)
    page = flow.authorize(scope=SCOPE)
    assert is_consent_page(page)
    refused = signed_in.post(
        "/authorize/decision", {"pending": page.context["pending_id"], "decision": "deny"}
    )
    assert refused.status_code in (302, 303)
    assert "error=access_denied" in refused["Location"] and "code=" not in refused["Location"]


@pytest.mark.parametrize("how", ["withdrawn", "expired", "material"])
def test_sharing_ended_removes_the_claims_from_the_next_userinfo_answer(
    personalised: Any, signed_in: BrowserClient, partner: Any, how: str
) -> None:
    tokens = _sign_in_flow(signed_in, partner)
    assert _userinfo_claims(tokens) == ALL_CLAIMS
    code = sharing_purpose_code(partner.client, PROFILE_SCOPES)
    assert code is not None
    if how == "withdrawn":
        consent_record(
            user=personalised, purpose_code=code, event_type="withdrawn", collection_method="web_form"
        )
    else:
        _end(personalised, code, how)
    assert set(userinfo(tokens["access_token"]).json()) == {"sub"}
    # The next sign-in asks again; approving it releases them again (the data was not erased:
    # the sharing purpose holds none).
    flow = OIDCFlow(signed_in, partner)
    assert is_consent_page(flow.authorize(scope=SCOPE))
    again = complete_flow(OIDCFlow(signed_in, partner), scope=SCOPE)
    assert _profile_claims(_id_token(again, partner)) == ALL_CLAIMS


def test_withdrawing_the_partner_from_mon_compte_stops_the_tokens(
    personalised: Any, signed_in: BrowserClient, partner: Any
) -> None:
    tokens = _sign_in_flow(signed_in, partner)
    sharing_withdraw(user=personalised, client=partner.client)
    assert userinfo(tokens["access_token"]).status_code == 401


# --- the underlying purpose withdrawn, expired, renewed -------------------------------------------

# culture was browsed too: once no longer declared, it is one of the inferred interests
# (sport first: more views).
DECLARED_GONE = {"interests": [INFERRED_INTEREST, {"theme": "culture", "kind": "inferred"}]}
BROWSING_GONE = {**ALL_CLAIMS, "interests": [DECLARED_INTEREST]}


@pytest.mark.parametrize("how", ["withdrawn", "expired", "material"])
@pytest.mark.parametrize(("purpose", "left"), [(DECLARED, DECLARED_GONE), (BROWSING, BROWSING_GONE)])
def test_the_underlying_purpose_ended_removes_its_claims_everywhere(
    personalised: Any, signed_in: BrowserClient, partner: Any, how: str, purpose: str, left: dict
) -> None:
    tokens = _sign_in_flow(signed_in, partner)
    assert _userinfo_claims(tokens) == ALL_CLAIMS
    _end(personalised, purpose, how)
    # The next userinfo answer, with the token issued before...
    assert _userinfo_claims(tokens) == left
    # ...and the next ID token (the sharing still holds: no consent screen).
    fresh = complete_flow(OIDCFlow(signed_in, partner), scope=SCOPE)
    assert _profile_claims(_id_token(fresh, partner)) == left
    assert _userinfo_claims(fresh) == left


@pytest.mark.parametrize("how", ["withdrawn", "material"])
def test_granting_the_purpose_again_releases_nothing_until_declared_again(
    personalised: Any, signed_in: BrowserClient, partner: Any, how: str
) -> None:
    tokens = _sign_in_flow(signed_in, partner)
    _end(personalised, DECLARED, how)
    event = decide(personalised, DECLARED, True)
    assert event.event_type == ("given" if how == "withdrawn" else "renewed")
    # Granting again starts empty: the withdrawal (or the new notice) erased the profile.
    assert _userinfo_claims(tokens) == DECLARED_GONE
    declared_update(user=personalised, changes={"commune": "44143"})
    assert _userinfo_claims(tokens)["commune"] == {"insee_code": "44143", "name": "Rezé"}


def test_browsing_granted_again_starts_with_no_inferred_interest(
    personalised: Any, signed_in: BrowserClient, partner: Any
) -> None:
    tokens = _sign_in_flow(signed_in, partner)
    decide(personalised, BROWSING, False)
    decide(personalised, BROWSING, True)
    assert _userinfo_claims(tokens)["interests"] == [DECLARED_INTEREST]


# --- discovery and the consent screen -------------------------------------------------------------


def test_discovery_lists_the_scopes_and_their_claims(db: Any) -> None:
    metadata = BrowserClient().get("/.well-known/openid-configuration").json()
    assert {"territory", "interests", "accessibility"} <= set(metadata["scopes_supported"])
    assert set(metadata["claims_supported"]) >= PROFILE_CLAIMS


SCREEN_FR = (
    "Votre commune de résidence (et votre quartier si vous l&#x27;avez indiqué)",
    "pour vous montrer les informations et les services de votre commune",
    "Vos préférences d&#x27;accessibilité",
    "pour adapter l&#x27;affichage des pages à vos besoins",
    "Les thèmes qui vous intéressent, déclarés par vous ou déduits de votre navigation",
    "pour vous proposer d&#x27;abord les contenus sur ces thèmes",
)
SCREEN_EN = (
    "Your commune of residence (and your district if you gave it)",
    "to show you the news and services of your commune",
    "Your accessibility preferences",
    "to adapt the pages to your needs",
    "The themes you are interested in, declared by you or inferred from your browsing",
    "to show you content on these themes first",
)


@pytest.mark.parametrize(
    ("language", "expected", "absent"), [("fr", SCREEN_FR, SCREEN_EN), ("en", SCREEN_EN, SCREEN_FR)]
)
def test_the_consent_screen_says_in_plain_words_what_each_scope_shares(
    resident: Any,
    signing_keys: Any,
    signed_in: BrowserClient,
    partner: Any,
    language: str,
    expected: tuple,
    absent: tuple,
) -> None:
    signed_in.cookies["language"] = language
    page = OIDCFlow(signed_in, partner).authorize(scope=SCOPE)
    assert is_consent_page(page)
    html = page.content.decode()
    for text in expected:
        assert text in html
    for text in absent:
        assert text not in html
    assert [item["scope"] for item in page.context["scopes"]] == PROFILE_SCOPES
