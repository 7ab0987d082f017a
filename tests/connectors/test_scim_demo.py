"""The demo's SCIM partner: `load_demo --scim-port N` gives the demo partner a SCIM connector
for the simulator, the demo resident's consent provisions them there, and the simulator runs
as `python -m connectors.scim_simulator` (what `python3 dev.py run` starts)."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import urllib.request
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command
from django.db import transaction
from oauth2_provider.models import get_application_model

from connectors.models import PartnerConnector
from connectors.outbox import relay_once
from connectors.scim_provisioning import KIND_SYNC
from connectors.scim_simulator import DEMO_TOKEN
from connectors.subjects import partner_subject
from identity.demo import DEMO_CLIENT_NAME, DEMO_EMAIL
from identity.models import User
from identity.oidc.sharing import consent_decision_record, sharing_purpose_code

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def var_dir(settings, tmp_path):
    settings.VAR_DIR = tmp_path
    return tmp_path


def test_load_demo_configures_the_scim_partner(db, var_dir, signing_keys, scim_sim):
    out = StringIO()
    call_command("load_demo", scim_port=scim_sim.port, stdout=out)
    call_command("load_demo", scim_port=scim_sim.port, stdout=StringIO())  # idempotent
    assert f"{scim_sim.base_url}/Users" in out.getvalue()
    demo = get_application_model().objects.get(name=DEMO_CLIENT_NAME)
    connector = PartnerConnector.objects.get(client=demo, kind="scim")
    assert connector.config["base_url"] == scim_sim.base_url
    resident = User.objects.get(email=DEMO_EMAIL)
    with transaction.atomic():
        consent_decision_record(
            user=resident, purpose_code=sharing_purpose_code(demo, ["openid", "profile", "email"]), allow=True
        )
    assert relay_once(kinds=[KIND_SYNC]).delivered == 1
    (user,) = scim_sim.users()
    assert user["externalId"] == partner_subject(demo.client_id, resident)


def test_the_scim_demo_needs_the_demo_client(db):
    with pytest.raises(CommandError):
        call_command("load_demo_scim", port=6003, stdout=StringIO())


def test_the_simulator_runs_as_a_command():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "connectors.scim_simulator", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = process.stdout.readline()
        assert f"http://127.0.0.1:{port}/scim/v2" in banner
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/scim/v2/ServiceProviderConfig",
            headers={"Authorization": f"Bearer {DEMO_TOKEN}"},
        )
        with urllib.request.urlopen(request, timeout=5) as answer:
            assert json.loads(answer.read())["etag"]["supported"] is True
    finally:
        process.terminate()
        process.wait(timeout=10)
