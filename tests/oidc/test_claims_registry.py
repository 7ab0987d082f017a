"""The claims registry (identity/oidc/claims/): a registered provider's scope is everywhere.

Registering a provider, as a future `profiles` app will from its AppConfig.ready(), adds its
scope to discovery, to client registration, to the consent screen and to the sharing
purpose recorded in the ledger, and its claims to userinfo and the ID token while the
resident's consent holds. The test-only provider is registered by a fixture and removed
after each test. The registry refuses a scope or claim already taken.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import combinations
from typing import Any

import pytest
from django.db import connection
from django.test import Client as BrowserClient
from django.test.utils import CaptureQueriesContext
from oauth2_provider.scopes import get_scopes_backend

from consent.services import consent_record, purpose_create
from identity.oidc import claims as registry
from identity.oidc.claims import registry as claims_tables
from identity.oidc.client_uris import ClientConfigError
from identity.oidc.clients import client_register
from identity.oidc.sharing import (
    _scopes_denied_by_provider_purpose,
    purpose_for_client_scopes,
    sharing_purpose_code,
)
from tests.conftest import REDIRECT_URI, OIDCFlow, verify_id_token
from tests.oidc.conftest import complete_flow, is_consent_page, userinfo

pytestmark = pytest.mark.django_db

SCOPES = "openid commune"


def _read_commune(user: Any, scopes: frozenset[str]) -> dict[str, Any]:
    claims: dict[str, Any] = {"member_since": int(user.created_at.timestamp())}
    if user.locality:
        claims["home_town"] = user.locality
    return claims


COMMUNE = registry.ClaimProvider(
    name="test-commune",
    scopes=(
        registry.ScopeSpec(
            name="commune",
            claims=("home_town", "member_since"),
            what="Votre commune (test)",
            why="pour vous proposer les services de votre commune (test)",
            claim_labels={"home_town": "commune de résidence (test)"},
            data_category=registry.DataCategory(fr="Commune (test)", en="Town (test)"),
        ),
    ),
    read=_read_commune,
    # created_at is read by no other provider: userinfo must add it to its one statement.
    user_fields=("locality", "created_at"),
)


@pytest.fixture
def commune_provider() -> Iterator[registry.ClaimProvider]:
    registry.register(COMMUNE)
    try:
        yield COMMUNE
    finally:
        registry.unregister(COMMUNE.name)


@pytest.fixture
def commune_resident(resident: Any) -> Any:
    resident.locality = "Rezé"
    resident.save(update_fields=["locality", "updated_at"])
    return resident


def _metadata() -> dict[str, Any]:
    return BrowserClient().get("/.well-known/openid-configuration").json()


def test_the_standard_provider_is_registered_at_start_up() -> None:
    # The standard claims first (identity), then the apps' (profiles, connectors).
    assert registry.supported_scopes() == (
        "openid",
        "profile",
        "email",
        "address",
        "phone",
        "territory",
        "accessibility",
        "interests",
        "library_card",
        "transport_subscription",
        "eligibility",
    )
    assert registry.STANDARD_PROVIDER in registry.providers()
    assert registry.claim_scope("phone_number") == "phone"
    assert registry.scope_claims("address") == ("address",)


def test_a_registered_scope_is_in_discovery_and_gone_once_unregistered() -> None:
    before = _metadata()
    assert "commune" not in before["scopes_supported"]
    registry.register(COMMUNE)
    try:
        during = _metadata()
        assert during["scopes_supported"] == [*before["scopes_supported"], "commune"]
        assert {"home_town", "member_since"} <= set(during["claims_supported"])
        assert during["claims_supported"] == sorted(during["claims_supported"])
    finally:
        registry.unregister(COMMUNE.name)
    after = _metadata()
    assert after == before


def test_client_registration_refuses_an_unknown_scope_then_accepts_it_once_registered(signing_keys) -> None:
    with pytest.raises(ClientConfigError, match="unknown scope 'commune'"):
        client_register(
            name="Mairie",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code"],
            scopes=["openid", "commune"],
        )
    registry.register(COMMUNE)
    try:
        client, _secret = client_register(
            name="Mairie",
            redirect_uris=[REDIRECT_URI],
            grant_types=["authorization_code"],
            scopes=["openid", "commune"],
        )
        assert client.scope_list == ["openid", "commune"]
    finally:
        registry.unregister(COMMUNE.name)


def test_the_registrys_scopes_backend_matches_the_registry(commune_provider) -> None:
    backend = get_scopes_backend()
    assert list(backend.get_all_scopes()) == list(registry.supported_scopes())
    assert backend.get_available_scopes() == list(registry.supported_scopes())
    assert backend.get_all_scopes()["commune"] == "Votre commune (test)"


def test_a_duplicate_scope_or_claim_or_provider_is_refused(commune_provider) -> None:
    taken_scope = registry.ClaimProvider(
        name="other",
        scopes=(
            registry.ScopeSpec(
                name="email",
                claims=("work_email",),
                what="x",
                why="y",
                data_category=registry.DataCategory(fr="x", en="x"),
            ),
        ),
        read=lambda user, scopes: {},
    )
    with pytest.raises(registry.ClaimsRegistryError, match="scope 'email' is already provided by 'standard'"):
        registry.register(taken_scope)
    taken_claim = registry.ClaimProvider(
        name="other",
        scopes=(
            registry.ScopeSpec(
                name="contact",
                claims=("phone_number",),
                what="x",
                why="y",
                data_category=registry.DataCategory(fr="x", en="x"),
            ),
        ),
        read=lambda user, scopes: {},
    )
    with pytest.raises(registry.ClaimsRegistryError, match="claim 'phone_number'"):
        registry.register(taken_claim)
    with pytest.raises(registry.ClaimsRegistryError, match="already registered"):
        registry.register(COMMUNE)
    with pytest.raises(registry.ClaimsRegistryError, match="scope 'commune' is already provided"):
        registry.register(registry.ClaimProvider(name="again", scopes=COMMUNE.scopes[:1], read=COMMUNE.read))
    with pytest.raises(registry.ClaimsRegistryError, match="malformed scope name"):
        registry.register(
            registry.ClaimProvider(
                name="spaced",
                scopes=(
                    registry.ScopeSpec(
                        name="two words",
                        claims=("x",),
                        what="x",
                        why="y",
                        data_category=registry.DataCategory(fr="x", en="x"),
                    ),
                ),
                read=lambda user, scopes: {},
            )
        )
    # Nothing of the refused providers was kept.
    assert registry.supported_scopes()[-1] == "commune"
    assert registry.claim_scope("work_email") is None


def test_the_consent_screen_describes_the_registered_scope(commune_provider, make_client, signed_in) -> None:
    rp = make_client(scopes=["openid", "commune"])
    page = OIDCFlow(signed_in, rp).authorize(scope=SCOPES)
    assert is_consent_page(page)
    html = page.content.decode()
    for text in ("Votre commune (test)", "pour vous proposer les services", "commune de résidence (test)"):
        assert text in html
    # A claim without a label shows its name; the standard scope keeps its own text.
    assert "member_since" in html
    assert "Un identifiant de connexion" in html
    assert [item["scope"] for item in page.context["scopes"]] == ["openid", "commune"]


def test_the_consent_screen_speaks_english_from_the_registry(make_client, signed_in) -> None:
    rp = make_client()
    signed_in.cookies["language"] = "en"
    page = OIDCFlow(signed_in, rp).authorize()
    assert is_consent_page(page)
    html = page.content.decode()
    assert "A sign-in identifier" in html
    assert "Un identifiant de connexion" not in html


def test_the_sharing_purpose_records_the_providers_data_category(commune_provider, make_client) -> None:
    rp = make_client(scopes=["openid", "commune"])
    purpose = purpose_for_client_scopes(client=rp.client, scopes=["commune", "openid"])
    assert purpose.data_categories == [
        {"code": "commune", "kind": "declared", "fr": "Commune (test)", "en": "Town (test)"},
        {
            "code": "openid",
            "kind": "declared",
            "fr": "Identifiant de compte (pseudonyme)",
            "en": "Account identifier (pseudonymous)",
        },
    ]
    assert "Commune (test)" in purpose.description_fr and "Town (test)" in purpose.description_en


def test_userinfo_and_the_id_token_release_the_providers_claims_while_consent_holds(
    commune_provider, make_client, signed_in, commune_resident
) -> None:
    rp = make_client(scopes=["openid", "commune"])
    tokens = complete_flow(OIDCFlow(signed_in, rp), scope=SCOPES)
    member_since = int(commune_resident.created_at.timestamp())
    id_token = verify_id_token(tokens["id_token"], rp.client_id)
    assert id_token["home_town"] == "Rezé" and id_token["member_since"] == member_since
    # Only the granted scopes' claims: no standard claim was asked for.
    assert "email" not in id_token and "name" not in id_token
    userinfo(tokens["access_token"])  # the process now knows the sharing's purpose
    with CaptureQueriesContext(connection) as queries:
        body = userinfo(tokens["access_token"]).json()
    assert body["home_town"] == "Rezé" and body["member_since"] == member_since
    assert set(body) == {"sub", "home_town", "member_since"}
    # Token, resident (with the provider's columns) and the ledger's answer: one statement.
    assert len([q for q in queries.captured_queries if "SELECT" in q["sql"]]) == 1
    code = sharing_purpose_code(rp.client, ["openid", "commune"])
    consent_record(
        user=commune_resident, purpose_code=code, event_type="withdrawn", collection_method="web_form"
    )
    assert set(userinfo(tokens["access_token"]).json()) == {"sub"}


def test_a_providers_own_purpose_must_be_granted_too(make_client, signed_in, resident) -> None:
    purpose_create(
        code="test.interests",
        title_fr="Centres d'intérêt (test)",
        title_en="Interests (test)",
        description_fr="Test",
        description_en="Test",
    )
    interests = registry.ClaimProvider(
        name="test-interests",
        scopes=(
            registry.ScopeSpec(
                name="test-outings",
                claims=("test_outings",),
                what="Vos centres d'intérêt (test)",
                why="pour vous proposer des sorties (test)",
                data_category=registry.DataCategory(fr="Centres d'intérêt", en="Interests"),
            ),
        ),
        read=lambda user, scopes: {"test_outings": ["musique"]},
        purpose_code="test.interests",
    )
    registry.register(interests)
    try:
        rp = make_client(scopes=["openid", "email", "test-outings"])
        tokens = complete_flow(OIDCFlow(signed_in, rp), scope="openid email test-outings")
        body = userinfo(tokens["access_token"]).json()
        # The sharing is granted (the screen was approved), the provider's purpose is not.
        assert body["email"] == resident.email and "test_outings" not in body
        consent_record(
            user=resident, purpose_code="test.interests", event_type="given", collection_method="web_form"
        )
        assert userinfo(tokens["access_token"]).json()["test_outings"] == ["musique"]
    finally:
        registry.unregister(interests.name)


def _gated_provider(name: str, purpose_code: str) -> registry.ClaimProvider:
    return registry.ClaimProvider(
        name=name,
        scopes=(
            registry.ScopeSpec(
                name=f"{name}-scope",
                claims=(f"{name.replace('-', '_')}_claim",),
                what=f"{name} (test)",
                why="test",
                data_category=registry.DataCategory(fr="Test", en="Test"),
            ),
        ),
        read=lambda user, scopes, name=name: {f"{name.replace('-', '_')}_claim": name},
        purpose_code=purpose_code,
    )


def test_several_providers_purposes_are_asked_together_and_an_unknown_one_is_never_granted(
    resident: Any,
) -> None:
    for code in ("test.granted", "test.refused"):
        purpose_create(code=code, title_fr=code, title_en=code, description_fr="Test", description_en="Test")
    consent_record(
        user=resident, purpose_code="test.granted", event_type="given", collection_method="web_form"
    )
    providers = [
        _gated_provider("test-granted", "test.granted"),
        _gated_provider("test-refused", "test.refused"),
        _gated_provider("test-unknown", "test.no-such-purpose"),
    ]
    for provider in providers:
        registry.register(provider)
    try:
        known = {"test-granted-scope", "test-refused-scope"}
        # One statement for both purposes (consent.gate.consent_granted_many)…
        assert _scopes_denied_by_provider_purpose(resident, known) == {"test-refused-scope"}
        # …and with a purpose the ledger does not know among them, each is asked alone:
        # the unknown one is never granted, the others keep their answers.
        everything = known | {"test-unknown-scope"}
        assert _scopes_denied_by_provider_purpose(resident, everything) == {
            "test-refused-scope",
            "test-unknown-scope",
        }
    finally:
        for provider in providers:
            registry.unregister(provider.name)


def test_a_claim_outside_the_granted_scopes_is_never_released(commune_provider, commune_resident) -> None:
    # A provider returning more than asked: the registry keeps the granted scopes' claims only.
    assert registry.read_claims(commune_resident, {"openid"}) == {}
    assert set(registry.read_claims(commune_resident, {"email"})) == {"email", "email_verified"}
    assert set(registry.read_claims(commune_resident, {"commune"})) == {"home_town", "member_since"}


def test_a_provider_reading_per_client_gets_the_partner_receiving_the_claims(resident, rp) -> None:
    seen: list[Any] = []

    def client_read(user: Any, scopes: frozenset[str], client: Any) -> dict[str, Any]:
        seen.append(client)
        return {"test_badge": f"for {client.client_id}"}

    provider = registry.ClaimProvider(
        name="test-badges",
        scopes=(
            registry.ScopeSpec(
                name="test-badge",
                claims=("test_badge",),
                what="Un badge (test)",
                why="pour un test",
                data_category=registry.DataCategory(fr="Badge", en="Badge"),
            ),
        ),
        read=lambda user, scopes: {"test_badge": "anyone"},
        client_read=client_read,
    )
    registry.register(provider)
    try:
        assert registry.read_claims(resident, {"test-badge"}) == {"test_badge": "anyone"}
        assert registry.read_claims(resident, {"test-badge"}, client=rp.client) == {
            "test_badge": f"for {rp.client_id}"
        }
        assert seen == [rp.client]
    finally:
        registry.unregister("test-badges")


def test_read_claims_follows_registration_and_removal(commune_resident) -> None:
    # read_claims walks each provider's scope names worked out when the registry changes
    # (registry._rebuild): a provider added or removed is seen by the next read, and the
    # table always matches the providers' own scopes, in registration order.
    assert registry.read_claims(commune_resident, {"commune"}) == {}
    registry.register(COMMUNE)
    try:
        assert set(registry.read_claims(commune_resident, {"commune", "email"})) == {
            "home_town",
            "member_since",
            "email",
            "email_verified",
        }
        table = claims_tables._provider_scopes
        assert [provider for provider, _names in table] == list(registry.providers())
        assert all(names == {spec.name for spec in provider.scopes} for provider, names in table)
    finally:
        registry.unregister(COMMUNE.name)
    assert registry.read_claims(commune_resident, {"commune"}) == {}
    assert [provider for provider, _names in claims_tables._provider_scopes] == list(registry.providers())


# --- purposes_needed and read_claims from the plan worked out once per set of scopes ----------


def _purposes_needed_as_before(scopes: Any) -> dict[str, tuple[str, ...]]:
    needed: dict[str, list[str]] = {}
    for scope in scopes:
        provider = claims_tables._scope_provider.get(scope)
        if provider is not None and provider.purpose_code:
            needed.setdefault(provider.purpose_code, []).append(scope)
    return {code: tuple(gated) for code, gated in needed.items()}


def _read_claims_as_before(user: Any, scopes: Any, client: Any = None) -> dict[str, Any]:
    wanted = frozenset(scopes)
    claims: dict[str, Any] = {}
    for provider, names in claims_tables._provider_scopes:
        own = names & wanted
        if not own:
            continue
        read = (
            provider.read(user, own)
            if provider.client_read is None or client is None
            else provider.client_read(user, own, client)
        )
        for name, value in read.items():
            if claims_tables._claim_scope.get(name) in own:
                claims[name] = value
    return claims


def _same_as_before(user: Any, client: Any) -> None:
    known = [*registry.supported_scopes(), "unknown-scope"]
    # Every set of up to two scopes, every set but one scope, all of them.
    sets = [scopes for size in (0, 1, 2, len(known) - 1, len(known)) for scopes in combinations(known, size)]
    for scopes in sets:
        for given in (set(scopes), list(reversed(scopes))):
            assert registry.purposes_needed(given) == _purposes_needed_as_before(given), scopes
            planned = registry.scope_purposes(frozenset(given))
            # The same codes, each with the same scopes (in the set's order), read-only.
            assert {code: sorted(gated) for code, gated in planned.items()} == {
                code: sorted(gated) for code, gated in _purposes_needed_as_before(given).items()
            }
            assert all(len(set(gated)) == len(gated) for gated in planned.values())
            with pytest.raises(TypeError):
                planned["x"] = ()  # type: ignore[index]
            for receiver in (None, client):
                claims = registry.read_claims(user, given, client=receiver)
                assert claims == _read_claims_as_before(user, given, receiver), scopes
                assert list(claims) == list(_read_claims_as_before(user, given, receiver))


def test_purposes_and_claims_are_those_the_registry_gave_for_every_set_of_scopes(
    commune_resident: Any, make_client: Any
) -> None:
    """Worked out once per set of scopes, the same answers as worked out at each call, for
    every set of the registered scopes (an unknown one too), and again once the registry
    changed (a provider with a purpose and one with a client reader registered, then gone)."""
    client = make_client().client
    commune_resident.phone_number = "+33240000000"
    commune_resident.street_address = "2 rue de l'Hôtel de Ville"
    _same_as_before(commune_resident, client)
    gated = _gated_provider("test-plan-gated", "test.plan")
    partnered = registry.ClaimProvider(
        name="test-plan-partner",
        scopes=(
            registry.ScopeSpec(
                name="test-plan-card",
                claims=("test_plan_card", "test_plan_holder"),
                what="Carte (test)",
                why="test",
                data_category=registry.DataCategory(fr="Carte", en="Card"),
            ),
        ),
        read=lambda user, scopes: {"test_plan_card": "generic", "stray": 1},
        client_read=lambda user, scopes, client: {"test_plan_card": client.client_id, "email": "not-its-own"},
    )
    registry.register(COMMUNE)
    registry.register(gated)
    registry.register(partnered)
    try:
        assert registry.scope_purposes(frozenset({"test-plan-gated-scope", "openid"})) == {
            "test.plan": ("test-plan-gated-scope",)
        }
        _same_as_before(commune_resident, client)
    finally:
        for provider in (partnered, gated, COMMUNE):
            registry.unregister(provider.name)
    assert registry.scope_purposes(frozenset({"test-plan-gated-scope"})) == {}
    assert "home_town" not in registry.read_claims(commune_resident, {"commune", "openid"})
    _same_as_before(commune_resident, client)
