"""The demo's library and Naolib operator: `load_demo --sip2-port N --transport-port M` gives
the demo partner a library and a transport connector for the simulators and prints the demo
cards; a demo card links against each."""

from __future__ import annotations

from datetime import date
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from oauth2_provider.models import get_application_model

from connectors.links import link_create
from connectors.models import PartnerConnector
from connectors.ticketing import link_secret as ticketing_secret
from connectors.transport import link_secret
from identity.demo import DEMO_CLIENT_NAME, DEMO_EMAIL
from identity.models import User
from tests.connectors.conftest import VALID_CARD


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def test_load_demo_configures_the_library_and_prints_the_cards(db, var_dir, signing_keys, library_sim):
    out = StringIO()
    call_command("load_demo", sip2_port=library_sim.port, stdout=out)
    call_command("load_demo", sip2_port=library_sim.port, stdout=StringIO())  # idempotent
    printed = out.getvalue()
    assert f"{VALID_CARD[0]} / {VALID_CARD[1]}" in printed and "/compte/cartes/" in printed
    demo = get_application_model().objects.get(name=DEMO_CLIENT_NAME)
    assert "library_card" in demo.allowed_scopes.split()
    connector = PartnerConnector.objects.get(client=demo)
    assert connector.config["port"] == library_sim.port
    link = link_create(
        user=User.objects.get(email=DEMO_EMAIL),
        partner_connector=connector,
        reference=VALID_CARD[0],
        secret="1234",
    )
    assert link.status == "valid"


def test_load_demo_without_the_simulator_configures_no_library(db, var_dir, signing_keys):
    call_command("load_demo", stdout=StringIO())
    assert not PartnerConnector.objects.exists()


def test_the_library_demo_needs_the_demo_client(db):
    with pytest.raises(CommandError):
        call_command("load_demo_library", port=6001, stdout=StringIO())


def test_load_demo_configures_the_transport_and_prints_its_cards(db, var_dir, signing_keys, transport_sim):
    out = StringIO()
    call_command("load_demo", transport_port=transport_sim.port, stdout=out)
    call_command("load_demo", transport_port=transport_sim.port, stdout=StringIO())  # idempotent
    printed = out.getvalue()
    assert "2501000000000001" in printed and "Martin" in printed and "1990-04-12" in printed
    demo = get_application_model().objects.get(name=DEMO_CLIENT_NAME)
    assert "transport_subscription" in demo.allowed_scopes.split()
    connector = PartnerConnector.objects.get(client=demo, kind="transport")
    link = link_create(
        user=User.objects.get(email=DEMO_EMAIL),
        partner_connector=connector,
        reference="2501000000000001",
        secret=link_secret(family_name="Martin", birth_date=date(1990, 4, 12)),
    )
    assert link.status == "valid"


def test_load_demo_configures_the_ticketing_platform_and_prints_its_cards(
    db, var_dir, signing_keys, ticketing_sim
):
    out = StringIO()
    call_command("load_demo", ticketing_port=ticketing_sim.port, stdout=out)
    call_command("load_demo", ticketing_port=ticketing_sim.port, stdout=StringIO())  # idempotent
    printed = out.getvalue()
    assert "7700000000000001" in printed and "7700000000000002" in printed and "1990-04-12" in printed
    demo = get_application_model().objects.get(name=DEMO_CLIENT_NAME)
    assert "eligibility" in demo.allowed_scopes.split()
    connector = PartnerConnector.objects.get(client=demo, kind="ticketing")
    link = link_create(
        user=User.objects.get(email=DEMO_EMAIL),
        partner_connector=connector,
        reference="7700000000000001",
        secret=ticketing_secret(birth_date=date(1990, 4, 12)),
    )
    assert link.status == "valid"


def test_the_ticketing_demo_needs_the_demo_client(db):
    with pytest.raises(CommandError):
        call_command("load_demo_ticketing", port=6003, stdout=StringIO())
