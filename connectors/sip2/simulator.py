"""A SIP2 library system for the tests and the demo: a real TCP server (optionally TLS),
threads, a small in-memory patron database, faults on demand, and a count of what it saw.

    python -m connectors.sip2.simulator --port 6001

prints the demo cards and PINs, then serves until interrupted. In Python:

    with Sip2Simulator() as sim:          # 127.0.0.1, a free port
        sim.port, sim.faults.delay = 2.0, sim.counts["63"]

It answers 93 (login), 23, 63, 35, 99 and 97 (resend the last answer) the way Koha and
Evergreen do: an unknown card gets BL N and every privilege denied; a known card gets BL Y
and CQ Y/N for its PIN; the card's expiry travels in `expiry_field` (Evergreen's PA).
Wrong PINs count per card: at `PIN_ATTEMPTS_BEFORE_LOCK` the card is blocked.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import socket
import socketserver
import ssl
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import date, timedelta
from typing import Any

from connectors.sip2 import codec
from connectors.sip2.codec import Message
from connectors.sip2.errors import ChecksumError, ProtocolError

PIN_ATTEMPTS_BEFORE_LOCK = 3
BLOCKED_BY_ATTEMPTS = frozenset(
    {"charge_privileges_denied", "renewal_privileges_denied", "hold_privileges_denied"}
)


@dataclass
class SimPatron:
    card: str
    pin: str
    name: str
    flags: frozenset[str] = frozenset()
    expiry: date | None = None
    email: str = ""
    phone: str = ""
    address: str = ""
    wrong_pin_attempts: int = 0
    screen_message: str = ""

    def current_flags(self) -> frozenset[str]:
        expired = self.expiry is not None and self.expiry < date.today()
        flags = set(self.flags)
        if expired:  # as Koha does: an expired card may not borrow
            flags |= {"charge_privileges_denied", "renewal_privileges_denied", "hold_privileges_denied"}
        if self.wrong_pin_attempts >= PIN_ATTEMPTS_BEFORE_LOCK:
            flags |= BLOCKED_BY_ATTEMPTS
        return frozenset(flags)


def demo_patrons(today: date | None = None) -> list[SimPatron]:
    """The demo's cards (printed at start; the tests use them too)."""
    today = today or date.today()
    return [
        SimPatron(
            "29000000000001",
            "1234",
            "Camille Durand",
            expiry=today + timedelta(days=365),
            email="camille.durand@example.org",
            phone="0240000001",
            address="2 rue de la Paix, 44000 Nantes",
        ),
        SimPatron(
            "29000000000002",
            "2345",
            "Jules Martin",
            flags=frozenset({"charge_privileges_denied", "excessive_outstanding_fines"}),
            expiry=today + timedelta(days=200),
            screen_message="Compte bloqué : amendes impayées",
        ),
        SimPatron("29000000000003", "3456", "Léa Bernard", expiry=today - timedelta(days=30)),
        SimPatron(
            "29000000000004",
            "4567",
            "Hugo Petit",
            expiry=today + timedelta(days=90),
            wrong_pin_attempts=PIN_ATTEMPTS_BEFORE_LOCK - 1,
        ),
    ]


DEMO_DESCRIPTIONS = {
    "29000000000001": "valid card",
    "29000000000002": "blocked card (fines)",
    "29000000000003": "expired card",
    "29000000000004": "one wrong PIN left before the card locks",
}


@dataclass
class Faults:
    """What goes wrong, set by a test (mutable while the server runs)."""

    delay: float = 0.0  # seconds before each answer
    garbage: int = 0  # the next N answers are not SIP2
    bad_checksum: int = 0  # the next N answers carry a wrong checksum
    resend_requests: int = 0  # the next N requests get 96 (please resend)
    close_mid_exchange: int = 0  # on the next N requests the server closes without answering
    refuse_login: bool = False  # answer 940 to every login


@dataclass
class Sip2Simulator:
    host: str = "127.0.0.1"
    port: int = 0
    institution: str = "NANTES-BM"
    login_user: str = "cum"
    login_password: str = "cum-sip2-demo"
    expiry_field: str | None = "PA"
    terminator: bytes = b"\r"  # b"\r\n": as Koha does by default
    tls_context: ssl.SSLContext | None = None
    patrons: Iterable[SimPatron] | None = None
    faults: Faults = field(default_factory=Faults)

    def __post_init__(self) -> None:
        self.database: dict[str, SimPatron] = {p.card: p for p in (self.patrons or demo_patrons())}
        self.counts: Counter[str] = Counter()  # message codes received
        self.connections = 0  # connections accepted
        self.active = 0
        self.max_active = 0  # the most connections open at once
        self.lock = threading.Lock()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._open_sockets: set[socket.socket] = set()

    # Life cycle ------------------------------------------------------------------------

    def start(self) -> Sip2Simulator:
        self._server = _Server((self.host, self.port), _Handler, self)
        self.port = self._server.server_address[1]
        server = self._server
        self._thread = threading.Thread(
            target=lambda: server.serve_forever(poll_interval=0.05), name="sip2-simulator", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self.drop_connections()
            self._server = None

    def __enter__(self) -> Sip2Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def drop_connections(self) -> None:
        """Close every open client connection (as a server restart or an idle timeout does)."""
        with self.lock:
            sockets = list(self._open_sockets)
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    # Bookkeeping -----------------------------------------------------------------------

    def _connected(self, sock: socket.socket) -> None:
        with self.lock:
            self.connections += 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self._open_sockets.add(sock)

    def _disconnected(self, sock: socket.socket) -> None:
        with self.lock:
            self.active -= 1
            self._open_sockets.discard(sock)

    def _take_fault(self, name: str) -> bool:
        with self.lock:
            left = getattr(self.faults, name)
            if left > 0:
                setattr(self.faults, name, left - 1)
                return True
            return False

    # Answers ---------------------------------------------------------------------------

    def answer(self, request: Message, session: dict[str, Any]) -> Message | None:
        """The answer to `request` (None: no answer, close the connection)."""
        code = request.code
        if code == codec.LOGIN:
            ok = (
                not self.faults.refuse_login
                and request.get("CN") == self.login_user
                and request.get("CO") == self.login_password
            )
            session["logged_in"] = ok
            return Message(codec.LOGIN_RESPONSE, "1" if ok else "0")
        if code == codec.SC_STATUS:
            fixed = "YYYYNN" + "030" + "003" + codec.now_sip() + "2.00"
            return Message(codec.ACS_STATUS, fixed, (("AO", self.institution), ("BX", "YYYYYYYYYYYYYYYY")))
        if not session.get("logged_in"):
            return None  # as Koha does: no service before a login
        if code in (codec.PATRON_STATUS, codec.PATRON_INFORMATION):
            return self._patron_answer(request)
        if code == codec.END_PATRON_SESSION:
            fields = (("AO", self.institution), ("AA", request.get("AA") or ""))
            return Message(codec.END_SESSION_RESPONSE, "Y" + codec.now_sip(), fields)
        return Message(codec.REQUEST_SC_RESEND)

    def _patron_answer(self, request: Message) -> Message:
        information = request.code == codec.PATRON_INFORMATION
        response_code = codec.PATRON_INFORMATION_RESPONSE if information else codec.PATRON_STATUS_RESPONSE
        language = request.fixed_at(0, 3) or "000"
        card = request.get("AA") or ""
        with self.lock:
            patron = self.database.get(card)
            pin_ok = self._check_pin(patron, request.get("AD"))
            flags = patron.current_flags() if patron else None
        if patron is None or flags is None:
            fixed = "YYYY" + " " * 10 + language + codec.now_sip() + ("0000" * 6 if information else "")
            unknown = (
                ("AO", self.institution),
                ("AA", card),
                ("AE", ""),
                ("BL", "N"),
                ("AF", "Carte inconnue"),
            )
            return Message(response_code, fixed, unknown)
        fixed = codec.format_status_flags(flags) + language + codec.now_sip()
        fields: list[tuple[str, str]] = [("AO", self.institution), ("AA", patron.card), ("AE", patron.name)]
        fields.append(("BL", "Y"))
        if pin_ok is not None:
            fields.append(("CQ", "Y" if pin_ok else "N"))
        if information:
            fixed += "0000" * 6
            fields += [("BZ", "0010"), ("CA", "0005"), ("CB", "0020")]
            fields += [(fid, value) for fid, value in (("BE", patron.email), ("BF", patron.phone)) if value]
            if patron.address:
                fields.append(("BD", patron.address))
            if self.expiry_field and patron.expiry:
                fields.append((self.expiry_field, codec.format_date(patron.expiry)))
        if patron.screen_message:
            fields.append(("AF", patron.screen_message))
        return Message(response_code, fixed, tuple(fields))

    @staticmethod
    def _check_pin(patron: SimPatron | None, pin: str | None) -> bool | None:
        if patron is None or pin is None:
            return None
        if pin == patron.pin:
            return True
        patron.wrong_pin_attempts += 1
        return False


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], handler: type[_Handler], simulator: Sip2Simulator) -> None:
        self.simulator = simulator
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        context = self.simulator.tls_context
        if context is not None:
            request.settimeout(5)
            try:
                request = context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return  # the client did not trust us, or went away
        super().finish_request(request, client_address)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client going away mid-exchange is part of the tests


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def handle(self) -> None:
        simulator = self.server.simulator
        sock: socket.socket = self.request
        sock.settimeout(30)
        simulator._connected(sock)
        session: dict[str, Any] = {"last": b""}
        try:
            buffer = b""
            while True:
                end = buffer.find(codec.TERMINATOR)
                if end < 0:
                    chunk = sock.recv(4096)
                    if not chunk:
                        return
                    buffer += chunk
                    continue
                frame, buffer = buffer[: end + 1], buffer[end + 1 :]
                if not self._serve(simulator, sock, frame, session):
                    return
        except OSError:
            return
        finally:
            simulator._disconnected(sock)
            with contextlib.suppress(OSError):
                sock.close()

    def _serve(
        self, simulator: Sip2Simulator, sock: socket.socket, frame: bytes, session: dict[str, Any]
    ) -> bool:
        """Answer one request; False to close the connection."""
        try:
            request = codec.decode(frame)
        except ChecksumError:
            sock.sendall(codec.encode(Message(codec.REQUEST_SC_RESEND)))
            return True
        except ProtocolError:
            return False
        with simulator.lock:
            simulator.counts[request.code] += 1
        if request.code == codec.REQUEST_ACS_RESEND:
            sock.sendall(self._damaged(simulator, session["last"]) or session["last"])
            return True
        if simulator._take_fault("close_mid_exchange"):
            return False
        if simulator.faults.delay:
            time.sleep(simulator.faults.delay)
        if simulator._take_fault("resend_requests"):
            sock.sendall(codec.encode(Message(codec.REQUEST_SC_RESEND)))
            return True
        answer = simulator.answer(request, session)
        if answer is None:
            return False
        data = codec.encode(replace(answer, sequence=request.sequence), error_detection=request.checksummed)
        data = data[:-1] + simulator.terminator
        session["last"] = data
        sock.sendall(self._damaged(simulator, data) or data)
        return True

    @staticmethod
    def _damaged(simulator: Sip2Simulator, data: bytes) -> bytes | None:
        if simulator._take_fault("garbage"):
            return b"\x00\xffHTTP/1.1 400 Bad Request\r"
        if data and simulator._take_fault("bad_checksum"):
            # Change one character of the body: the checksum no longer matches.
            return b"X" + data[1:] if data[:1] != b"X" else b"Y" + data[1:]
        return None


def print_banner(simulator: Sip2Simulator) -> None:
    """The address, the SIP account and the demo cards, for the person starting the demo."""
    print(f"SIP2 simulator on {simulator.host}:{simulator.port}", flush=True)
    login = f"{simulator.login_user} / {simulator.login_password}"
    print(f"  institution {simulator.institution}, SIP login {login}")
    print("  demo library cards (card number / PIN):")
    for patron in simulator.database.values():
        note = DEMO_DESCRIPTIONS.get(patron.card, "")
        print(f"    {patron.card} / {patron.pin}  {patron.name} - {note}")
    print("  any other card number: unknown card", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="SIP2 library-system simulator (demo and tests)")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=int(os.environ.get("SIP2_SIMULATOR_PORT", "6001")))
    args = parser.parse_args(argv)
    simulator = Sip2Simulator(host=args.host, port=args.port).start()
    print_banner(simulator)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        simulator.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
