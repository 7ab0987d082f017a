"""A partner endpoint on a real local port, and real worker processes."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection

from connectors.models import PartnerConnector
from connectors.scim_simulator import ScimSimulator
from connectors.services import partner_connector_configure
from connectors.sip2.simulator import Sip2Simulator
from connectors.ticketing_simulator import TicketingSimulator
from connectors.transport_simulator import TransportSimulator
from tests.connectors.form_handler import register as register_form_handler
from tests.local_servers import RecordingServer

ROOT = Path(__file__).resolve().parents[2]
WORKER = Path(__file__).resolve().parent / "outbox_worker.py"

register_form_handler()


class PartnerServer(RecordingServer):
    """A partner endpoint on 127.0.0.1 that records what it receives (tests/local_servers.py)."""

    def __init__(self, port: int = 0) -> None:
        super().__init__("/backchannel", port)


@pytest.fixture
def partner() -> Iterator[PartnerServer]:
    server = PartnerServer()
    yield server
    server.close()


def database_url_of_test_db() -> str:
    s = connection.settings_dict
    if s["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgres://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture
def run_worker() -> Any:
    """Run `manage.py outbox_worker` as a separate OS process against the test database
    (through tests/connectors/outbox_worker.py, which adds the test-only message kind)."""

    def run(*args: str, wait: bool = True) -> Any:
        env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
        env["DATABASE_URL"] = database_url_of_test_db()
        command = [sys.executable, str(WORKER), *args]
        if not wait:
            return subprocess.Popen(
                command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )
        result = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        return result

    return run


# --- the library connector against the SIP2 simulator -------------------------------------

VALID_CARD = ("29000000000001", "1234")
BLOCKED_CARD = ("29000000000002", "2345")
EXPIRED_CARD = ("29000000000003", "3456")
UNKNOWN_CARD = ("29999999999999", "0000")


@pytest.fixture
def library_sim() -> Iterator[Sip2Simulator]:
    """The SIP2 simulator on a free port of 127.0.0.1 (a real socket)."""
    with Sip2Simulator() as sim:
        yield sim


def library_config(sim: Sip2Simulator, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "host": "127.0.0.1",
        "port": sim.port,
        "institution_id": sim.institution,
        "login_user": sim.login_user,
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
    }
    config.update(overrides)
    return config


@pytest.fixture
def library_client(make_client: Any) -> Any:
    """The library portal, a partner client offered the library_card scope."""
    return make_client(name="Portail des bibliothèques", scopes=["openid", "profile", "library_card"])


@pytest.fixture
def library(library_sim: Sip2Simulator, library_client: Any) -> PartnerConnector:
    """The library portal's connector, pointing at the simulator."""
    return partner_connector_configure(
        client=library_client.client,
        kind="library",
        label="Bibliothèques de Nantes Métropole",
        config=library_config(library_sim),
        secrets={"login_password": library_sim.login_password},
    )


# --- the transport connector against the Naolib simulator ---------------------------------

TRANSPORT_NAME, TRANSPORT_BIRTH = "Martin", "1990-04-12"
TRANSPORT_VALID = "2501000000000001"
TRANSPORT_EXPIRED = "2501000000000002"
TRANSPORT_NO_CONTRACT = "2501000000000003"
TRANSPORT_REPLACED = "2501000000000004"
TRANSPORT_UNKNOWN = "2501999999999999"


@pytest.fixture
def transport_sim() -> Iterator[TransportSimulator]:
    """The Naolib simulator on a free port of 127.0.0.1 (a real HTTP socket)."""
    with TransportSimulator() as sim:
        sim.faults.delay = 2.0
        yield sim


def transport_config(sim: TransportSimulator | TicketingSimulator, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {"base_url": sim.base_url, "connect_timeout": 1.0, "read_timeout": 1.0}
    config.update(overrides)
    return config


@pytest.fixture
def transport_client(make_client: Any) -> Any:
    """A partner offering subscribers' rates, offered the transport_subscription scope."""
    return make_client(name="Naolib", scopes=["openid", "profile", "transport_subscription"])


@pytest.fixture
def transport(transport_sim: TransportSimulator, transport_client: Any) -> PartnerConnector:
    return partner_connector_configure(
        client=transport_client.client,
        kind="transport",
        label="Naolib — carte Libertan",
        config=transport_config(transport_sim),
        secrets={"api_key": transport_sim.api_key},
    )


# --- the ticketing connector against the ticketing platform simulator ----------------------

TICKETING_BIRTH = "1990-04-12"
TICKETING_ELIGIBLE = "7700000000000001"
TICKETING_NOT_ELIGIBLE = "7700000000000002"
TICKETING_UNKNOWN = "7799999999999999"
ticketing_config = transport_config  # the same contract client settings (connectors.http_contract)


@pytest.fixture
def ticketing_sim() -> Iterator[TicketingSimulator]:
    """The ticketing platform simulator on a free port of 127.0.0.1 (a real HTTP socket)."""
    with TicketingSimulator() as sim:
        sim.faults.delay = 2.0
        yield sim


@pytest.fixture
def ticketing_client(make_client: Any) -> Any:
    """A cultural-ticketing platform, offered the eligibility scope."""
    return make_client(name="Billetterie culturelle", scopes=["openid", "profile", "eligibility"])


@pytest.fixture
def ticketing(ticketing_sim: TicketingSimulator, ticketing_client: Any) -> PartnerConnector:
    return partner_connector_configure(
        client=ticketing_client.client,
        kind="ticketing",
        label="Billetterie culturelle — Carte Blanche",
        config=ticketing_config(ticketing_sim),
        secrets={"api_key": ticketing_sim.api_key},
    )


# --- the SCIM connector against scim2-server ----------------------------------------------


@pytest.fixture
def scim_sim() -> Iterator[ScimSimulator]:
    """A partner's SCIM service (the scim2-server package) on a free port of 127.0.0.1."""
    with ScimSimulator() as sim:
        yield sim


def scim_config(sim: ScimSimulator, **overrides: Any) -> dict[str, Any]:
    config: dict[str, Any] = {
        "base_url": sim.base_url,
        "connect_timeout": 1.0,
        "read_timeout": 1.0,
        "max_attempts": 3,
    }
    config.update(overrides)
    return config


@pytest.fixture
def scim_client(make_client: Any) -> Any:
    """A partner that accepts SCIM provisioning, offered names and email."""
    return make_client(name="Maison des associations", scopes=["openid", "profile", "email"])


@pytest.fixture
def scim(scim_sim: ScimSimulator, scim_client: Any) -> PartnerConnector:
    return partner_connector_configure(
        client=scim_client.client,
        kind="scim",
        label="Maison des associations",
        config=scim_config(scim_sim),
        secrets={"bearer_token": scim_sim.token},
    )
