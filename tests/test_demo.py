"""The newcomer's demo data: idempotent, usable by /demo/ and the consent widget demo."""

from __future__ import annotations

import json
import stat
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from oauth2_provider.models import get_application_model

from identity.demo import DEMO_CLIENT_NAME, DEMO_EMAIL, DEMO_PASSWORD, DEMO_SCOPES
from identity.models import User


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def test_load_demo_is_idempotent_and_prints_the_credentials(db, var_dir, signing_keys):
    out = StringIO()
    call_command("load_demo", stdout=out)
    call_command("load_demo", stdout=StringIO())
    assert DEMO_EMAIL in out.getvalue() and DEMO_PASSWORD in out.getvalue()
    assert User.objects.filter(email=DEMO_EMAIL).count() == 1
    clients = get_application_model().objects.filter(name=DEMO_CLIENT_NAME)
    assert clients.count() == 1
    demo = clients.get()
    saved = json.loads((var_dir / "demo-client.json").read_text())
    assert saved["client_id"] == demo.client_id
    assert demo.check_secret(saved["client_secret"])
    assert stat.S_IMODE((var_dir / "demo-client.json").stat().st_mode) == 0o600


def test_demo_client_accepts_the_consent_widget_from_our_origin(db, var_dir, settings, signing_keys):
    call_command("load_demo", stdout=StringIO())
    demo = get_application_model().objects.get(name=DEMO_CLIENT_NAME)
    assert settings.ISSUER in demo.allowed_origins.split()
    assert demo.redirect_uris == settings.ISSUER + "/demo/callback"


def test_demo_data_is_refused_in_production(db, var_dir, settings):
    settings.PRODUCTION = True
    with pytest.raises(CommandError):
        call_command("load_demo", stdout=StringIO())
    assert not User.objects.filter(email=DEMO_EMAIL).exists()


def test_the_demo_client_asks_the_profiles_scopes_of_its_portal_page(db, var_dir, signing_keys):
    call_command("load_demo", stdout=StringIO())
    demo = get_application_model().objects.get(name=DEMO_CLIENT_NAME)
    assert demo.allowed_scopes.split() == DEMO_SCOPES
    assert {"territory", "interests", "accessibility"} <= set(DEMO_SCOPES)


def test_a_demo_client_loaded_before_the_portal_page_gains_the_scopes(db, var_dir, signing_keys):
    call_command("load_demo", stdout=StringIO())
    demo = get_application_model().objects.get(name=DEMO_CLIENT_NAME)
    demo.allowed_scopes = "openid profile email"
    demo.save(update_fields=["allowed_scopes"])
    out = StringIO()
    call_command("load_demo", stdout=out)
    demo.refresh_from_db()
    assert demo.allowed_scopes.split() == DEMO_SCOPES
    assert "/demo/portail/" in out.getvalue()
