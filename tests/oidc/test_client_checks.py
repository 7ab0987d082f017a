"""One validator for a partner client's configuration (identity.oidc.client_checks): the
service behind `register_client`, the staff form and `Client.clean` give the same answer
(same field, same message) for the same bad configuration."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import translation
from oauth2_provider.models import get_application_model

from identity.oidc.admin import PartnerClientForm
from identity.oidc.client_checks import client_config_errors
from identity.oidc.client_uris import ClientConfigError
from identity.oidc.clients import client_register

pytestmark = pytest.mark.django_db

BASE: dict[str, Any] = {
    "redirect_uris": ["https://rp.example.org/cb"],
    "grant_types": ["authorization_code"],
    "scopes": ["openid"],
    "public": False,
    "auth_method": "client_secret_basic",
    "sector_identifier_uri": "",
    "jwks": None,
}

CASES = {
    "http-redirect-in-production": (
        {"redirect_uris": ["http://127.0.0.1:8080/cb"]},
        "redirect_uris",
        "http is allowed only on loopback",
    ),
    "fragment": ({"redirect_uris": ["https://rp.example.org/cb#x"]}, "redirect_uris", "fragment"),
    "several-hosts-without-sector": (
        {"redirect_uris": ["https://a.example.org/cb", "https://b.example.org/cb"]},
        "sector_identifier_uri",
        "several hosts (a.example.org, b.example.org) need a sector identifier URI",
    ),
    "private-key-jwt-without-keys": ({"auth_method": "private_key_jwt"}, "jwks", "private_key_jwt needs"),
    "public-client-credentials": (
        {"public": True, "auth_method": "none", "grant_types": ["client_credentials"], "redirect_uris": []},
        "grant_types",
        "public client cannot use the client_credentials grant",
    ),
    "unknown-scope": ({"scopes": ["openid", "admin"]}, "allowed_scopes", "unknown scope 'admin'"),
}


def service_answer(config: dict[str, Any]) -> tuple[str, str]:
    with pytest.raises(ClientConfigError) as excinfo:
        client_register(
            name="Partenaire",
            redirect_uris=config["redirect_uris"],
            grant_types=config["grant_types"],
            scopes=config["scopes"],
            public=config["public"],
            token_endpoint_auth_method=config["auth_method"],
            sector_identifier_uri=config["sector_identifier_uri"],
            jwks=config["jwks"],
        )
    return excinfo.value.field, str(excinfo.value)


def model_errors(config: dict[str, Any]) -> dict[str, list[str]]:
    client = get_application_model()(
        name="Partenaire",
        client_type="public" if config["public"] else "confidential",
        authorization_grant_type=config["grant_types"][0].replace("_", "-"),
        grant_types=" ".join(config["grant_types"]),
        allowed_scopes=" ".join(config["scopes"]),
        redirect_uris=" ".join(config["redirect_uris"]),
        token_endpoint_auth_method=config["auth_method"],
        sector_identifier_uri=config["sector_identifier_uri"],
        jwks=config["jwks"],
        algorithm="RS256",
    )
    with pytest.raises(ValidationError) as excinfo:
        client.clean()
    return excinfo.value.message_dict


def form_errors(config: dict[str, Any]) -> dict[str, list[str]]:
    form = PartnerClientForm(
        data={
            "name": "Partenaire",
            "client_type": "public" if config["public"] else "confidential",
            "grant_types": " ".join(config["grant_types"]),
            "allowed_scopes": " ".join(config["scopes"]),
            "redirect_uris": " ".join(config["redirect_uris"]),
            "post_logout_redirect_uris": "",
            "token_endpoint_auth_method": config["auth_method"],
            "jwks": json.dumps(config["jwks"]) if config["jwks"] else "",
            "jwks_uri": "",
            "algorithm": "RS256",
            "sector_identifier_uri": config["sector_identifier_uri"],
        }
    )
    assert not form.is_valid()
    return dict(form.errors)


@pytest.mark.parametrize("case", list(CASES))
def test_the_three_entry_points_give_the_same_answer(settings: Any, case: str) -> None:
    settings.ALLOW_HTTP_LOOPBACK_REDIRECTS = False  # production
    overrides, field, expected = CASES[case]
    config = {**BASE, **overrides}
    service_field, message = service_answer(config)  # the operator's language: English
    assert (service_field, expected in message) == (field, True), message
    with translation.override("en"):
        assert message in model_errors(config)[field]
        assert message in form_errors(config)[field]
    with translation.override("fr"):  # staff read French; the form shows what Client.clean says
        french = model_errors(config)[field]
        assert set(french) & set(form_errors(config)[field])
    assert not get_application_model().objects.exists()


def test_every_problem_is_reported_field_by_field() -> None:
    with translation.override("fr"):
        errors = client_config_errors(
            redirect_uris=["https://a.example.org/cb#x"],
            post_logout_redirect_uris=[],
            grant_types=["password"],
            scopes=["admin"],
            public=False,
            auth_method="private_key_jwt",
            signing_alg="HS256",
        )
    assert list(errors) == ["grant_types", "allowed_scopes", "redirect_uris", "algorithm", "jwks"]
    assert errors["allowed_scopes"][0].startswith("Portée inconnue : 'admin' (choisissez parmi : openid")
    assert "Algorithme de signature inconnu : 'HS256'" in errors["algorithm"][0]
