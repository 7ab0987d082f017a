"""The SIP2 client against the simulator over real sockets on 127.0.0.1: answers, faults,
TLS, the pool, and what the logs may say."""

from __future__ import annotations

import logging
import socket
import ssl
import subprocess
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from connectors.sip2 import client as sip2_client
from connectors.sip2.client import PatronStatus, Sip2Client, Sip2Config
from connectors.sip2.errors import (
    ChecksumError,
    ConnectionClosed,
    FieldValueError,
    LoginRefused,
    PoolExhausted,
    ProtocolError,
    ReadTimeout,
    TlsError,
    Unavailable,
    Unreachable,
)
from connectors.sip2.simulator import Sip2Simulator
from tests.connectors.sip2.conftest import (
    BLOCKED,
    EXPIRED,
    LAST_ATTEMPT,
    UNKNOWN,
    VALID,
    make_authority,
    make_config,
)

ROOT = Path(__file__).resolve().parents[3]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# Answers --------------------------------------------------------------------------------------


def test_valid_card(simulator: Sip2Simulator, client_of: Any) -> None:
    status = client_of(simulator).patron_check(*VALID)
    assert status.valid_card and status.pin_ok is True and not status.blocked and not status.expired
    assert status.usable
    assert status.name == "Camille Durand"
    assert status.expiry is not None and status.expiry > date.today()
    assert simulator.counts["63"] == 1 and simulator.counts["35"] == 1


def test_wrong_pin(simulator: Sip2Simulator, client_of: Any) -> None:
    status = client_of(simulator).patron_check(VALID[0], "9999")
    assert status.valid_card and status.pin_ok is False and not status.usable


def test_unknown_card(simulator: Sip2Simulator, client_of: Any) -> None:
    status = client_of(simulator).patron_check(*UNKNOWN)
    assert status == PatronStatus(False, None, False, frozenset(), None, False)
    assert not status.usable


def test_blocked_card(simulator: Sip2Simulator, client_of: Any) -> None:
    status = client_of(simulator).patron_check(*BLOCKED)
    assert status.valid_card and status.pin_ok is True and status.blocked and not status.expired
    assert status.block_reasons == {"charge_privileges_denied", "excessive_outstanding_fines"}
    assert status.screen_messages == ("Compte bloqué : amendes impayées",)
    assert not status.usable


def test_expired_card(simulator: Sip2Simulator, client_of: Any) -> None:
    status = client_of(simulator).patron_check(*EXPIRED)
    assert status.valid_card and status.pin_ok is True and status.expired
    assert status.expiry is not None and status.expiry < date.today()
    assert not status.usable


def test_wrong_pin_attempts_lock_the_card(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator)
    assert client.patron_check(*LAST_ATTEMPT).usable
    assert client.patron_check(LAST_ATTEMPT[0], "0000").pin_ok is False
    locked = client.patron_check(*LAST_ATTEMPT)
    assert locked.pin_ok is True and locked.blocked and not locked.usable


def test_expiry_field_is_configurable(client_of: Any) -> None:
    with Sip2Simulator(expiry_field="XD") as sim:
        assert client_of(sim, expiry_field="XD").patron_check(*VALID).expiry is not None
        assert client_of(sim).patron_check(*VALID).expiry is None  # looks for PA
        assert client_of(sim, expiry_field=None).patron_check(*VALID).expiry is None


def test_patron_status_end_session_and_health(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator)
    status = client.patron_status(*VALID)
    assert status.valid_patron and status.valid_password and status.personal_name == "Camille Durand"
    assert client.end_session(VALID[0]).ended
    health = client.sc_status()
    assert health.online and health.institution == simulator.institution
    assert simulator.counts["23"] == 1 and simulator.counts["99"] == 1


def test_login_once_per_connection_and_sequence_numbers_wrap(
    simulator: Sip2Simulator, client_of: Any
) -> None:
    client = client_of(simulator)
    for _ in range(7):  # 14 requests after the login: sequence numbers 0–9 then again
        assert client.patron_check(*VALID).usable
    assert simulator.counts["93"] == 1 == simulator.connections == client.pool.opened


def test_server_ending_messages_with_crlf(client_of: Any) -> None:
    with Sip2Simulator(terminator=b"\r\n", expiry_field="DE") as sim:
        client = client_of(sim, expiry_field="DE")
        for _ in range(3):
            status = client.patron_check(*VALID)
            assert status.usable and status.expiry is not None
        assert client.pool.opened == 1


def test_without_error_detection(simulator: Sip2Simulator, client_of: Any) -> None:
    assert client_of(simulator, error_detection=False).patron_check(*VALID).usable


def test_values_that_cannot_travel_are_refused_before_sending(
    simulator: Sip2Simulator, client_of: Any
) -> None:
    client = client_of(simulator)
    for card, pin in ((VALID[0], "12|34"), (VALID[0], "12\r"), ("  ", "1234"), ("29|00", "1234")):
        with pytest.raises(FieldValueError):
            client.patron_check(card, pin)
    assert simulator.connections == 0


# Login ----------------------------------------------------------------------------------------


def test_login_refused(simulator: Sip2Simulator, client_of: Any) -> None:
    with pytest.raises(LoginRefused):
        client_of(simulator, login_password="wrong").patron_check(*VALID)
    simulator.faults.refuse_login = True
    with pytest.raises(LoginRefused):
        client_of(simulator).sc_status()


# Unreachable, slow, garbage ---------------------------------------------------------------------


def test_unreachable(client_of: Any) -> None:
    port = free_port()  # nothing listens there
    config = Sip2Config("127.0.0.1", port, "BM", connect_timeout=1.0, read_timeout=1.0)
    started = time.monotonic()
    with pytest.raises(Unreachable):
        Sip2Client(config).patron_check(*VALID)
    assert time.monotonic() - started < 2


def test_unknown_host() -> None:
    config = Sip2Config("sip2.invalid", 6001, "BM", connect_timeout=1.0)
    with pytest.raises(Unreachable):
        Sip2Client(config).sc_status()


def test_slow_server_read_timeout(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator, read_timeout=0.5)
    client.sc_status()  # connected and logged in
    simulator.faults.delay = 3.0
    started = time.monotonic()
    with pytest.raises(ReadTimeout):
        client.patron_check(*VALID)
    assert time.monotonic() - started < 1.5
    simulator.faults.delay = 0
    assert client.patron_check(*VALID).usable  # on a new connection: the late answer is not read
    assert client.pool.opened == 2


def test_garbage(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator)
    client.sc_status()
    simulator.faults.garbage = 1
    with pytest.raises(ProtocolError) as caught:
        client.patron_check(*VALID)
    assert not isinstance(caught.value, ChecksumError)
    assert client.patron_check(*VALID).usable
    assert client.pool.opened == 2


# Checksums and resends ------------------------------------------------------------------------


def test_bad_checksum_once_is_retried(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator)
    client.sc_status()
    simulator.faults.bad_checksum = 1
    assert client.patron_check(*VALID).usable
    assert simulator.counts["97"] == 1 and simulator.counts["63"] == 1


def test_bad_checksum_twice_is_an_error(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator)
    client.sc_status()
    simulator.faults.bad_checksum = 2
    with pytest.raises(ChecksumError):
        client.patron_information(*VALID)
    assert simulator.counts["97"] == 1
    assert client.patron_check(*VALID).usable


def test_resend_request_once_is_honoured(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator)
    client.sc_status()
    simulator.faults.resend_requests = 1
    assert client.patron_check(*VALID).usable
    assert simulator.counts["63"] == 2  # sent, resent


def test_resend_request_twice_is_an_error(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator)
    client.sc_status()
    simulator.faults.resend_requests = 2
    with pytest.raises(ProtocolError, match="resend"):
        client.patron_information(*VALID)


def test_a_request_with_a_bad_checksum_gets_a_resend_request(simulator: Sip2Simulator) -> None:
    with socket.create_connection(("127.0.0.1", simulator.port), timeout=2) as sock:
        sock.sendall(b"990 402.00AY1AZFCB5\r")
        assert sock.recv(100) == b"96AZFEF6\r"


# Connections closed by the server ---------------------------------------------------------------


def test_server_closing_mid_exchange_on_a_reused_connection(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator)
    client.sc_status()
    simulator.faults.close_mid_exchange = 1
    assert client.patron_check(*VALID).usable
    assert client.pool.opened == 2 and simulator.counts["93"] == 2


def test_server_closing_every_time_is_a_clear_error(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator)
    client.sc_status()
    simulator.faults.close_mid_exchange = 5
    with pytest.raises(ConnectionClosed):
        client.patron_check(*VALID)  # one reconnection, no loop
    assert simulator.connections == 2


def test_idle_connections_closed_by_the_server_are_replaced(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator)
    client.sc_status()
    simulator.drop_connections()
    deadline = time.monotonic() + 2
    while simulator.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert client.patron_check(*VALID).usable
    assert client.pool.opened == 2 and simulator.counts["93"] == 2


def test_idle_timeout(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator, idle_timeout=0.05)
    client.sc_status()
    time.sleep(0.1)
    client.sc_status()
    assert client.pool.opened == 2


# TLS ------------------------------------------------------------------------------------------


def test_tls_with_verification(tmp_path: Path, client_of: Any) -> None:
    authority = make_authority(tmp_path, "good")
    with Sip2Simulator(tls_context=authority.server_context()) as sim:
        client = client_of(sim, use_tls=True, tls_ca_file=str(authority.ca_file))
        for _ in range(3):
            assert client.patron_check(*VALID).usable
        assert client.pool.opened == 1 == sim.connections  # reused over TLS
        named = client_of(sim, use_tls=True, tls_ca_file=str(authority.ca_file), tls_server_name="sip2.test")
        assert named.sc_status().online


def test_tls_untrusted_certificate(tmp_path: Path, client_of: Any) -> None:
    server = make_authority(tmp_path, "server")
    other = make_authority(tmp_path, "other")
    with Sip2Simulator(tls_context=server.server_context()) as sim:
        with pytest.raises(TlsError, match="not trusted"):
            client_of(sim, use_tls=True, tls_ca_file=str(other.ca_file)).sc_status()
        with pytest.raises(TlsError):  # the system CAs do not know the test CA either
            client_of(sim, use_tls=True).sc_status()
        with pytest.raises(TlsError):  # trusted CA, wrong name
            client_of(
                sim, use_tls=True, tls_ca_file=str(server.ca_file), tls_server_name="elsewhere.test"
            ).sc_status()
        assert sim.counts["93"] == 0


def test_tls_client_against_a_plain_server(simulator: Sip2Simulator, client_of: Any) -> None:
    context = ssl.create_default_context()
    with pytest.raises((TlsError, Unavailable)):
        client_of(simulator, use_tls=True, ssl_context=context, connect_timeout=1).sc_status()


# The pool -------------------------------------------------------------------------------------


def test_pool_is_bounded_and_thread_safe(simulator: Sip2Simulator, client_of: Any) -> None:
    simulator.faults.delay = 0.01
    client = client_of(simulator, pool_size=2, pool_wait=10)
    cards = [VALID, BLOCKED, EXPIRED, UNKNOWN]
    results: list[tuple[str, PatronStatus]] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(index: int) -> None:
        try:
            for round_ in range(5):
                card, pin = cards[(index + round_) % len(cards)]
                status = client.patron_check(card, pin)
                with lock:
                    results.append((card, status))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors
    assert len(results) == 40
    for card, status in results:
        assert status.valid_card == (card != UNKNOWN[0])
        assert status.usable == (card == VALID[0])
        assert status.blocked == (card in (BLOCKED[0], EXPIRED[0]))
    assert simulator.max_active <= 2 and client.pool.opened <= 2
    assert simulator.counts["93"] == client.pool.opened
    assert client.pool.idle_count() == client.pool.opened


def test_pool_exhausted(simulator: Sip2Simulator, client_of: Any) -> None:
    client = client_of(simulator, pool_size=1, pool_wait=0.2, read_timeout=3)
    client.sc_status()
    simulator.faults.delay = 1.0
    busy = threading.Thread(target=client.sc_status)
    busy.start()
    time.sleep(0.2)
    started = time.monotonic()
    with pytest.raises(PoolExhausted):
        client.sc_status()
    assert time.monotonic() - started < 1
    busy.join(5)


def test_shared_pool_per_configuration(simulator: Sip2Simulator) -> None:
    config = make_config(simulator)
    try:
        assert sip2_client.patron_check(config, *VALID).usable
        assert sip2_client.client_for(make_config(simulator)) is sip2_client.client_for(config)
    finally:
        sip2_client.client_for(config).close()


def test_configuration_is_checked() -> None:
    for wrong in (
        {"port": 0},
        {"host": ""},
        {"read_timeout": 0},
        {"pool_size": 0},
        {"expiry_field": "P"},
        {"login_user": "u"},
        {"institution_id": ""},
    ):
        values: dict[str, Any] = {"host": "127.0.0.1", "port": 6001, "institution_id": "BM", **wrong}
        with pytest.raises(ValueError):
            Sip2Config(**values)
    assert "secret" not in repr(Sip2Config("h", 1, "BM", login_user="u", login_password="secret"))


# Logs -----------------------------------------------------------------------------------------


def test_logs_never_hold_card_numbers_pins_or_names(
    simulator: Sip2Simulator, client_of: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = client_of(simulator)
    statuses = [client.patron_check(*card) for card in (VALID, BLOCKED, UNKNOWN)]
    client.patron_check(VALID[0], "9876")
    simulator.faults.bad_checksum = 2
    with pytest.raises(ChecksumError) as checksum_error:
        client.patron_check(*VALID)
    simulator.faults.garbage = 1
    with pytest.raises(ProtocolError) as garbage_error:
        client.patron_check(*VALID)
    logged = "\n".join(record.getMessage() for record in caplog.records)
    assert simulator.institution in logged and "63 -> 64" in logged
    secrets = [*VALID, BLOCKED[0], UNKNOWN[0], "9876", "Camille", "Durand", simulator.login_password]
    shown = logged + str(checksum_error.value) + str(garbage_error.value) + repr(statuses)
    for secret in secrets:
        assert secret not in shown


# The command line -----------------------------------------------------------------------------


def test_simulator_command_prints_the_demo_cards() -> None:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "connectors.sip2.simulator", "--port", str(port)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        banner = [process.stdout.readline() for _ in range(8)]
        assert f"127.0.0.1:{port}" in banner[0]
        assert any(f"{VALID[0]} / {VALID[1]}" in line for line in banner)
        config = Sip2Config(
            "127.0.0.1", port, "NANTES-BM", login_user="cum", login_password="cum-sip2-demo", read_timeout=5
        )
        client = Sip2Client(config)
        try:
            assert client.patron_check(*VALID).usable
        finally:
            client.close()
    finally:
        process.terminate()
        process.wait(10)
