"""A SIP2 client over TCP, optionally TLS, with a small pool of logged-in connections.

- **Timeouts.** `connect_timeout` bounds the TCP connection and the TLS handshake;
  `read_timeout` bounds the whole wait for one answer (a server dripping bytes cannot hold
  us longer). Nothing waits without a bound: taking a connection from a full pool waits
  `pool_wait` at most.
- **TLS.** SIP2 has no encryption of its own: a site reaches its library system through a
  TLS tunnel (stunnel or the server's own TLS). `use_tls` wraps the socket in an
  `ssl.SSLContext` that verifies the certificate and the host name (the system CAs, or
  `tls_ca_file`, or a context given by the caller).
- **Login** (93/94) once per connection, when a login user is configured.
- **Error detection.** Every request carries a sequence number (0–9, per connection) and a
  checksum; every answer's checksum is verified. On a wrong checksum we ask for the answer
  again once (97); on the server's request to resend (96) we resend once. A second failure
  is an error.
- **Pool.** At most `pool_size` connections per configuration, kept open between requests
  (`idle_timeout`), checked before reuse (a connection the server closed is dropped), and
  one reconnection when the server closed a reused connection during an exchange. Every
  message this client sends is a read (23, 63, 35, 99), so sending it again is safe.
- **Logs** name the institution, the message codes and the outcome; never a card number,
  a PIN, a name, or a raw message (which holds them all).
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import date

from connectors.sip2 import codec
from connectors.sip2.codec import DEFAULT_ENCODING, MAX_MESSAGE_BYTES, TERMINATOR, Message
from connectors.sip2.errors import (
    ChecksumError,
    ConnectionClosed,
    FieldValueError,
    LoginRefused,
    PoolExhausted,
    ProtocolError,
    ReadTimeout,
    Sip2Error,
    TlsError,
    Unreachable,
)

log = logging.getLogger("connectors.sip2")


@dataclass(frozen=True)
class Sip2Config:
    """How to reach one library system; a partner's connector configuration fills it."""

    host: str
    port: int
    institution_id: str
    login_user: str | None = None
    login_password: str | None = field(default=None, repr=False)
    location_code: str = ""
    terminal_password: str | None = field(default=None, repr=False)
    use_tls: bool = False
    tls_ca_file: str | None = None  # None: the system's trusted CAs
    tls_server_name: str | None = None  # None: `host`
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    # The extension field carrying the card's expiry in 64 answers, or None when the site
    # sends none. "PA" is Evergreen's (FID_PATRON_EXPIRE, an Envisionware extension); stock
    # Koha sends no expiry (its PA is "PAC access type") unless a `custom_patron_field` is
    # configured in SIPconfig.xml (its example: DE, `[% patron.dateexpiry %]`), whose code
    # then goes here. docs/connectors/library.md.
    expiry_field: str | None = "PA"
    encoding: str = DEFAULT_ENCODING
    error_detection: bool = True
    pool_size: int = 2
    pool_wait: float = 5.0
    # Below the servers' own idle limits (Koha: `client_timeout`, 600 s in its example
    # SIPconfig.xml), so that we drop a connection before the server does.
    idle_timeout: float = 30.0
    ssl_context: ssl.SSLContext | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.host or not 0 < self.port < 65536:
            raise ValueError("SIP2: a host and a port between 1 and 65535")
        if min(self.connect_timeout, self.read_timeout, self.pool_wait, self.idle_timeout) <= 0:
            raise ValueError("SIP2: timeouts are positive")
        if self.pool_size < 1:
            raise ValueError("SIP2: the pool holds at least one connection")
        if self.expiry_field is not None and len(self.expiry_field) != 2:
            raise ValueError("SIP2: a field code is two characters")
        if (self.login_user is None) != (self.login_password is None):
            raise ValueError("SIP2: a login user and its password go together")
        if not self.institution_id:
            raise ValueError("SIP2: the institution id (AO) is required")

    def tls_context(self) -> ssl.SSLContext:
        if self.ssl_context is not None:
            return self.ssl_context
        return ssl.create_default_context(cafile=self.tls_ca_file)


class Sip2Connection:
    """One TCP (or TLS) connection, logged in. Not thread-safe: the pool hands it to one
    thread at a time. After any failure it is closed, never reused."""

    def __init__(self, config: Sip2Config) -> None:
        self.config = config
        self._sock: socket.socket | None = None
        self._buffer = bytearray()
        self._sequence = 9  # the first request carries 0
        self.last_used = time.monotonic()

    @classmethod
    def open(cls, config: Sip2Config) -> Sip2Connection:
        connection = cls(config)
        connection._connect()
        try:
            connection._login()
        except BaseException:
            connection.close()
            raise
        return connection

    def _connect(self) -> None:
        config = self.config
        try:
            sock = socket.create_connection((config.host, config.port), timeout=config.connect_timeout)
        except TimeoutError:
            raise Unreachable("SIP2: connect timeout") from None
        except OSError as exc:
            raise Unreachable(f"SIP2: cannot connect ({type(exc).__name__})") from None
        # TCP keep-alive: a peer gone without a word (a firewall dropping an idle flow) shows.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if config.use_tls:
            sock = self._wrap_tls(sock)
        self._sock = sock

    def _wrap_tls(self, sock: socket.socket) -> socket.socket:
        config = self.config
        try:
            return config.tls_context().wrap_socket(
                sock, server_hostname=config.tls_server_name or config.host
            )
        except ssl.SSLCertVerificationError as exc:
            sock.close()
            raise TlsError(f"SIP2: server certificate not trusted ({exc.verify_message})") from None
        except ssl.SSLError as exc:
            sock.close()
            raise TlsError(f"SIP2: TLS handshake failed ({exc.reason})") from None
        except TimeoutError:
            sock.close()
            raise Unreachable("SIP2: TLS handshake timeout") from None
        except OSError as exc:
            sock.close()
            raise Unreachable(
                f"SIP2: connection lost during the TLS handshake ({type(exc).__name__})"
            ) from None

    def _login(self) -> None:
        config = self.config
        if config.login_user is None or config.login_password is None:
            return
        request = codec.login_request(
            user=config.login_user, password=config.login_password, location=config.location_code
        )
        answer = codec.parse_login_response(self.exchange(request, codec.LOGIN_RESPONSE))
        if not answer.ok:
            log.warning("SIP2 %s: login refused (94 ok=0)", config.institution_id)
            raise LoginRefused("SIP2: the library system refused our login (check user, password, location)")

    def _next_sequence(self) -> int:
        self._sequence = (self._sequence + 1) % 10
        return self._sequence

    def exchange(self, message: Message, expect: str) -> Message:
        """Send `message`, return the answer coded `expect`, after at most one resend."""
        config = self.config
        sequence = self._next_sequence() if config.error_detection else None
        data = codec.encode(
            replace(message, sequence=sequence),
            error_detection=config.error_detection,
            encoding=config.encoding,
        )
        self._send(data)
        answer, retried = self._receive_with_one_retry(data)
        if answer.code != expect:
            raise ProtocolError(f"SIP2: expected message {expect}, received {answer.code}")
        # A resent answer may carry another sequence number (servers renumber it).
        if not retried and sequence is not None and answer.sequence not in (None, sequence):
            raise ProtocolError("SIP2: answer with another sequence number (a stale answer?)")
        self.last_used = time.monotonic()
        return answer

    def _receive_with_one_retry(self, data: bytes) -> tuple[Message, bool]:
        retried = False
        while True:
            try:
                answer = self._receive()
            except ChecksumError:
                if retried:
                    raise
                log.warning(
                    "SIP2 %s: bad checksum, asking for the answer again (97)", self.config.institution_id
                )
                retried = True
                self._send(codec.encode(codec.resend_request(), error_detection=self.config.error_detection))
                continue
            if answer.code == codec.REQUEST_SC_RESEND:
                if retried:
                    raise ProtocolError("SIP2: the server asked for a resend again")
                log.warning("SIP2 %s: the server asked for a resend (96)", self.config.institution_id)
                retried = True
                self._send(data)
                continue
            return answer, retried

    def _receive(self) -> Message:
        frame = self._read_frame()
        config = self.config
        answer = codec.decode(frame, encoding=config.encoding)
        if config.error_detection and not answer.checksummed and answer.code != codec.REQUEST_SC_RESEND:
            raise ChecksumError("SIP2 message without the error-detection checksum")
        return answer

    def _send(self, data: bytes) -> None:
        sock = self._socket()
        try:
            sock.settimeout(self.config.read_timeout)
            sock.sendall(data)
        except TimeoutError:
            raise ReadTimeout("SIP2: the server does not read our request") from None
        except OSError as exc:
            raise ConnectionClosed(f"SIP2: connection lost while sending ({type(exc).__name__})") from None

    def _read_frame(self) -> bytes:
        """Bytes up to and including the next CR, within `read_timeout` in all."""
        sock = self._socket()
        deadline = time.monotonic() + self.config.read_timeout
        while True:
            end = self._buffer.find(TERMINATOR)
            if end >= 0:
                frame = bytes(self._buffer[: end + 1])
                del self._buffer[: end + 1]
                if self._buffer.startswith(b"\n"):
                    del self._buffer[:1]  # the LF of servers ending messages with CRLF
                return frame
            if len(self._buffer) > MAX_MESSAGE_BYTES:
                raise ProtocolError("SIP2: answer too long, or not SIP2 (no CR)")
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ReadTimeout("SIP2: no complete answer within the read timeout")
            sock.settimeout(remaining)
            try:
                chunk = sock.recv(4096)
            except TimeoutError:
                raise ReadTimeout("SIP2: no complete answer within the read timeout") from None
            except ssl.SSLError:
                raise ProtocolError("SIP2: TLS error while reading the answer") from None
            except OSError as exc:
                raise ConnectionClosed(
                    f"SIP2: connection lost while reading ({type(exc).__name__})"
                ) from None
            if not chunk:
                raise ConnectionClosed("SIP2: the server closed the connection")
            self._buffer += chunk

    def _socket(self) -> socket.socket:
        if self._sock is None:
            raise ConnectionClosed("SIP2: connection closed")
        return self._sock

    def is_reusable(self) -> bool:
        """Open, not idle too long, and nothing unread but line ends. The server sends nothing
        unasked: what is pending is the LF of a CRLF terminator, TLS records (session
        tickets), the end of the connection, or garbage; only the first two leave it usable."""
        if self._sock is None or self._buffer.strip(b"\r\n"):
            return False
        self._buffer.clear()
        if time.monotonic() - self.last_used > self.config.idle_timeout:
            return False
        try:
            readable, _, _ = select.select([self._sock], [], [], 0)
        except (OSError, ValueError):
            return False
        return not readable or self._drain_pending(self._sock)

    def _drain_pending(self, sock: socket.socket) -> bool:
        """Read what is pending without waiting: True when the connection is still open and
        held nothing but line ends."""
        try:
            sock.setblocking(False)
            while True:
                try:
                    chunk = sock.recv(4096)
                except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                    return True  # nothing (more) for the application
                if not chunk or chunk.strip(b"\r\n"):
                    return False  # closed, or unsolicited bytes
        except OSError:
            return False
        finally:
            with contextlib.suppress(OSError):
                sock.settimeout(self.config.read_timeout)

    def close(self) -> None:
        sock, self._sock = self._sock, None
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


class Sip2Pool:
    """At most `config.pool_size` connections, reused between requests; thread-safe."""

    def __init__(self, config: Sip2Config) -> None:
        self.config = config
        self._slots = threading.BoundedSemaphore(config.pool_size)
        self._idle: list[Sip2Connection] = []
        self._lock = threading.Lock()
        self._closed = False
        self.opened = 0  # connections opened so far (metrics, tests)

    def request(self, message: Message, expect: str) -> Message:
        if not self._slots.acquire(timeout=self.config.pool_wait):
            raise PoolExhausted("SIP2: every connection stayed busy")
        try:
            return self._request_in_slot(message, expect)
        finally:
            self._slots.release()

    def _request_in_slot(self, message: Message, expect: str) -> Message:
        connection, reused = self._take()
        try:
            answer = self._exchange_on(connection, message, expect)
        except ConnectionClosed:
            if not reused:
                raise
            log.info(
                "SIP2 %s: the server closed a pooled connection; reconnecting", self.config.institution_id
            )
            connection = self._open()
            answer = self._exchange_on(connection, message, expect)
        self._give_back(connection)
        return answer

    @staticmethod
    def _exchange_on(connection: Sip2Connection, message: Message, expect: str) -> Message:
        try:
            return connection.exchange(message, expect)
        except BaseException:
            connection.close()
            raise

    def _take(self) -> tuple[Sip2Connection, bool]:
        while True:
            with self._lock:
                connection = self._idle.pop() if self._idle else None
            if connection is None:
                return self._open(), False
            if connection.is_reusable():
                return connection, True
            connection.close()

    def _open(self) -> Sip2Connection:
        connection = Sip2Connection.open(self.config)
        with self._lock:
            self.opened += 1
        return connection

    def _give_back(self, connection: Sip2Connection) -> None:
        with self._lock:
            if not self._closed:
                self._idle.append(connection)
                return
        connection.close()

    def idle_count(self) -> int:
        with self._lock:
            return len(self._idle)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()


@dataclass(frozen=True)
class PatronStatus:
    """What "link my library card" needs to know. Holds no card number and no PIN; the name
    and the screen messages stay out of its repr (logs)."""

    valid_card: bool  # the library knows the card
    pin_ok: bool | None  # None: the server did not say (no CQ field)
    blocked: bool  # at least one of the 14 patron status flags is set
    block_reasons: frozenset[str]  # their names (codec.PATRON_STATUS_FLAGS)
    expiry: date | None  # when the site sends it (Sip2Config.expiry_field)
    expired: bool
    name: str | None = field(default=None, repr=False)
    screen_messages: tuple[str, ...] = field(default=(), repr=False)

    @property
    def usable(self) -> bool:
        """A card that can be linked: known, PIN confirmed, not blocked, not expired."""
        return self.valid_card and self.pin_ok is True and not self.blocked and not self.expired


def patron_status_of(
    info: codec.PatronInformationResponse, *, today: date, institution: str = ""
) -> PatronStatus:
    """The `PatronStatus` of a 64 answer. A card is valid when BL says Y (or, from a server
    that sends no BL, when the answer names the patron)."""
    status = info.status
    valid_card = status.valid_patron if status.valid_patron is not None else bool(status.personal_name)
    if not valid_card:
        # Servers answer an unknown card with every privilege denied: no block to report.
        return PatronStatus(False, None, False, frozenset(), None, False)
    expiry = None
    if info.expiry_raw:
        try:
            expiry = codec.parse_date(info.expiry_raw)
        except ProtocolError:
            log.warning("SIP2 %s: the expiry field holds no date this client reads", institution)
    return PatronStatus(
        valid_card=True,
        pin_ok=status.valid_password,
        blocked=bool(status.flags),
        block_reasons=status.flags,
        expiry=expiry,
        expired=expiry is not None and expiry < today,
        name=status.personal_name,
        screen_messages=status.screen_messages,
    )


class Sip2Client:
    """The requests a connector makes, over a pool (its own, or a shared one)."""

    def __init__(self, config: Sip2Config, pool: Sip2Pool | None = None) -> None:
        self.config = config
        self.pool = pool if pool is not None else Sip2Pool(config)

    def _request(self, message: Message, expect: str) -> Message:
        started = time.monotonic()
        institution = self.config.institution_id
        try:
            answer = self.pool.request(message, expect)
        except Sip2Error as exc:
            log.warning("SIP2 %s: %s failed: %s", institution, message.code, type(exc).__name__)
            raise
        log.info(
            "SIP2 %s: %s -> %s in %d ms",
            institution,
            message.code,
            answer.code,
            (time.monotonic() - started) * 1000,
        )
        return answer

    def _check_credentials(self, card_number: str, pin: str | None) -> None:
        if not card_number.strip():
            raise FieldValueError("SIP2: an empty card number")
        codec.check_value(card_number, encoding=self.config.encoding)
        if pin is not None:
            codec.check_value(pin, encoding=self.config.encoding)

    def patron_status(self, card_number: str, pin: str | None) -> codec.PatronStatusResponse:
        """23 → 24."""
        self._check_credentials(card_number, pin)
        request = codec.patron_status_request(
            institution=self.config.institution_id,
            patron=card_number,
            patron_password=pin,
            terminal_password=self.config.terminal_password,
        )
        return codec.parse_patron_status_response(self._request(request, codec.PATRON_STATUS_RESPONSE))

    def patron_information(self, card_number: str, pin: str | None) -> codec.PatronInformationResponse:
        """63 → 64 (summary blank: no item lists)."""
        self._check_credentials(card_number, pin)
        request = codec.patron_information_request(
            institution=self.config.institution_id,
            patron=card_number,
            patron_password=pin,
            terminal_password=self.config.terminal_password,
        )
        answer = self._request(request, codec.PATRON_INFORMATION_RESPONSE)
        return codec.parse_patron_information_response(answer, expiry_field=self.config.expiry_field)

    def end_session(self, card_number: str) -> codec.EndSessionResponse:
        """35 → 36."""
        self._check_credentials(card_number, None)
        request = codec.end_session_request(
            institution=self.config.institution_id,
            patron=card_number,
            terminal_password=self.config.terminal_password,
        )
        return codec.parse_end_session_response(self._request(request, codec.END_SESSION_RESPONSE))

    def sc_status(self) -> codec.AcsStatus:
        """99 → 98: the health check."""
        return codec.parse_acs_status(self._request(codec.sc_status_request(), codec.ACS_STATUS))

    def patron_check(self, card_number: str, pin: str, *, today: date | None = None) -> PatronStatus:
        """Is this card known, is this its PIN, is it blocked or expired? (63 → 64, then 35.)"""
        info = self.patron_information(card_number, pin)
        # A failed end of session is logged by _request; the answer we need is already here.
        with contextlib.suppress(Sip2Error):
            self.end_session(card_number)
        return patron_status_of(info, today=today or date.today(), institution=self.config.institution_id)

    def close(self) -> None:
        self.pool.close()


_clients: dict[Sip2Config, Sip2Client] = {}
_clients_lock = threading.Lock()


def client_for(config: Sip2Config) -> Sip2Client:
    """The process's client (and pool) for `config`: one pool per library system."""
    with _clients_lock:
        client = _clients.get(config)
        if client is None:
            client = _clients[config] = Sip2Client(config)
        return client


def patron_check(config: Sip2Config, card_number: str, pin: str) -> PatronStatus:
    """`Sip2Client.patron_check` on the shared pool of `config`."""
    return client_for(config).patron_check(card_number, pin)
