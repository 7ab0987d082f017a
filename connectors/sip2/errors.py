"""The SIP2 errors, one hierarchy for the codec and the client.

Messages never carry what was exchanged: a SIP2 message holds the card number and the PIN.

    Sip2Error
    ├── Unavailable          the library system did not answer (say "try again later")
    │   ├── Unreachable      connection refused, DNS, connect timeout
    │   │   └── ConnectionClosed  the server closed the connection (the pool reconnects once)
    │   ├── ReadTimeout      connected, but no complete answer in time
    │   └── PoolExhausted    every pooled connection stayed busy past the wait
    ├── TlsError             the TLS handshake failed (certificate not trusted, wrong name…)
    ├── LoginRefused         the server refused our SIP login (93/94): our configuration
    ├── ProtocolError        the answer is not the SIP2 we expect (garbage, wrong message)
    │   └── ChecksumError    the error-detection checksum of an answer is wrong
    └── FieldValueError      a value we were asked to send cannot be sent (`|`, CR…)
"""

from __future__ import annotations


class Sip2Error(Exception):
    """Any SIP2 failure."""


class Unavailable(Sip2Error):
    """The library system did not answer: unreachable, too slow, or no connection free."""


class Unreachable(Unavailable):
    """No connection: refused, unknown host, connect timeout, or closed by the server."""


class ConnectionClosed(Unreachable):
    """The server closed the connection (or reset it) during an exchange."""


class ReadTimeout(Unavailable):
    """Connected, but no complete answer within the read timeout."""


class PoolExhausted(Unavailable):
    """Every connection of the pool stayed busy longer than the wait allowed."""


class TlsError(Sip2Error):
    """The TLS handshake failed: certificate not trusted or not for this host."""


class LoginRefused(Sip2Error):
    """The server answered 940 to our login (93): wrong SIP user, password or location."""


class ProtocolError(Sip2Error):
    """The bytes received are not the SIP2 message expected."""


class ChecksumError(ProtocolError):
    """The error-detection checksum (`AZ`) of a received message does not match its bytes."""


class FieldValueError(Sip2Error, ValueError):
    """A value cannot travel in a SIP2 field: it holds `|` or a control character (CR, LF…),
    or a character outside the configured character set. SIP2 has no escaping."""
