"""SIP2 messages: bytes to messages and back (3M Standard Interchange Protocol 2.00).

A message is a two-digit code, fixed-length fields (their lengths depend on the code), then
variable fields `XXvalue|` (a two-character identifier, the value, a `|`), then, with error
detection, `AY<sequence digit>AZ<4 hex digits>`, and a carriage return.

**Checksum.** The 16-bit sum of the bytes from the first one up to and including `AZ`,
two's complement, four upper-case hex digits (`checksum`). Received checksums are always
verified; a wrong one raises `ChecksumError`.

**Character set.** The specification says 7-bit ASCII; in practice servers send Latin-1
(ISO-8859-1), some UTF-8 (Koha and Evergreen have an `encoding` setting). We use Latin-1 by
default (`DEFAULT_ENCODING`) for three reasons: ASCII is a subset of it, so standard
messages are unchanged; every byte decodes, so an unexpected byte never breaks the parsing
of an answer (at worst an accented name reads wrong); and French names (é, è, ç, œ aside)
fit in it. A site whose server speaks UTF-8 sets `encoding="utf-8"` in its configuration.
The checksum is computed on the bytes, whatever the character set. Decoding never fails
(undecodable bytes become U+FFFD); encoding refuses a character the set cannot carry.

**`|` and CR in values.** SIP2 has no escaping: a `|` would end the field early and a CR the
message. Values holding `|` or any control character are refused (`FieldValueError`) rather
than altered: silently changing a PIN or a card number would make a wrong answer look like
a right one.

**Dates** are 18 characters, `YYYYMMDDZZZZHHMMSS`: `ZZZZ` is four spaces for the local
time of the sender, or `   Z` for UTC (we send UTC).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from connectors.sip2.errors import ChecksumError, FieldValueError, ProtocolError

DEFAULT_ENCODING = "latin-1"
TERMINATOR = b"\r"
FIELD_END = "|"
MAX_MESSAGE_BYTES = 64 * 1024

# Message codes. Requests (self-check unit, "SC", to the library system, "ACS")…
LOGIN = "93"
PATRON_STATUS = "23"
PATRON_INFORMATION = "63"
END_PATRON_SESSION = "35"
SC_STATUS = "99"
REQUEST_ACS_RESEND = "97"
# …and answers.
LOGIN_RESPONSE = "94"
PATRON_STATUS_RESPONSE = "24"
PATRON_INFORMATION_RESPONSE = "64"
END_SESSION_RESPONSE = "36"
ACS_STATUS = "98"
REQUEST_SC_RESEND = "96"

# Length of the fixed part after the code, per message code (SIP2 2.00).
FIXED_LENGTHS: dict[str, int] = {
    LOGIN: 2,  # UID algorithm, PWD algorithm
    PATRON_STATUS: 21,  # language 3, transaction date 18
    PATRON_INFORMATION: 31,  # language 3, transaction date 18, summary 10
    END_PATRON_SESSION: 18,  # transaction date
    SC_STATUS: 8,  # status code 1, max print width 3, protocol version 4
    REQUEST_ACS_RESEND: 0,
    LOGIN_RESPONSE: 1,  # ok
    PATRON_STATUS_RESPONSE: 35,  # patron status 14, language 3, transaction date 18
    PATRON_INFORMATION_RESPONSE: 59,  # patron status 14, language 3, date 18, six counts of 4
    END_SESSION_RESPONSE: 19,  # end session 1, transaction date 18
    ACS_STATUS: 34,  # 6 flags, timeout 3, retries 3, date 18, protocol version 4
    REQUEST_SC_RESEND: 0,
}

_FIELD_ID = re.compile(r"[A-Z][A-Z0-9]")
_TRAILER = re.compile(r"(?:AY(\d))?AZ([0-9A-Fa-f]{4})$")
_UNSENDABLE = re.compile(r"[|\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Message:
    """A SIP2 message: its code, its fixed part (as one string) and its variable fields in the
    order received (an identifier may repeat, such as `AF` screen messages)."""

    code: str
    fixed: str = ""
    fields: tuple[tuple[str, str], ...] = ()
    sequence: int | None = None
    checksummed: bool = field(default=False, compare=False)

    def get(self, field_id: str) -> str | None:
        """The first value of a variable field, or None when absent."""
        for key, value in self.fields:
            if key == field_id:
                return value
        return None

    def get_all(self, field_id: str) -> list[str]:
        return [value for key, value in self.fields if key == field_id]

    def fixed_at(self, start: int, length: int) -> str:
        return self.fixed[start : start + length]


def checksum(data: bytes) -> str:
    """The error-detection checksum of `data` (the bytes up to and including `AZ`): the two's
    complement of their 16-bit sum, as four upper-case hex digits."""
    return f"{(-sum(data)) & 0xFFFF:04X}"


def check_value(value: str, *, encoding: str = DEFAULT_ENCODING) -> str:
    """`value` if it can travel in a SIP2 field, else `FieldValueError` (naming no value: it may
    be a PIN)."""
    if _UNSENDABLE.search(value):
        raise FieldValueError("a SIP2 field value cannot hold '|' or a control character")
    try:
        value.encode(encoding)
    except UnicodeEncodeError:
        raise FieldValueError(f"a SIP2 field value holds a character outside {encoding}") from None
    return value


def encode(message: Message, *, error_detection: bool = True, encoding: str = DEFAULT_ENCODING) -> bytes:
    """The bytes of `message`, CR included. With error detection, `AY<sequence>` (when the
    message has a sequence number) and `AZ<checksum>` end it."""
    if len(message.code) != 2 or not message.code.isdigit():
        raise FieldValueError("a SIP2 message code is two digits")
    expected = FIXED_LENGTHS.get(message.code)
    if expected is not None and len(message.fixed) != expected:
        raise FieldValueError(f"message {message.code}: the fixed part is {expected} characters")
    check_value(message.fixed, encoding=encoding)
    parts = [message.code, message.fixed]
    for field_id, value in message.fields:
        if not _FIELD_ID.fullmatch(field_id):
            raise FieldValueError("a SIP2 field identifier is two characters, A-Z then A-Z or 0-9")
        parts.append(f"{field_id}{check_value(value, encoding=encoding)}{FIELD_END}")
    body = "".join(parts).encode(encoding)
    if error_detection:
        if message.sequence is not None:
            if not 0 <= message.sequence <= 9:
                raise FieldValueError("a SIP2 sequence number is one digit")
            body += f"AY{message.sequence}".encode("ascii")
        body += b"AZ"
        body += checksum(body).encode("ascii")
    return body + TERMINATOR


def decode(
    data: bytes,
    *,
    encoding: str = DEFAULT_ENCODING,
    require_checksum: bool = False,
) -> Message:
    """The message in `data` (one message, its CR optional). A checksum, when present, must be
    right (`ChecksumError`); `require_checksum` makes its absence an error too. Anything else
    that is not SIP2 raises `ProtocolError`."""
    raw = data[:-1] if data.endswith(TERMINATOR) else data
    raw = raw.lstrip(b"\n")  # servers configured with CRLF: the LF starts the next message
    if len(raw) > MAX_MESSAGE_BYTES:
        raise ProtocolError("SIP2 message too long")
    sequence, checksummed, raw = _strip_trailer(raw, require_checksum=require_checksum)
    text = raw.decode(encoding, errors="replace")
    code = text[:2]
    fixed_length = FIXED_LENGTHS.get(code)
    if fixed_length is None:
        raise ProtocolError("not a SIP2 message this client knows (unknown message code)")
    if len(text) < 2 + fixed_length:
        raise ProtocolError(f"SIP2 message {code} shorter than its fixed fields")
    fixed = text[2 : 2 + fixed_length]
    fields = _variable_fields(text[2 + fixed_length :], code)
    return Message(code, fixed, fields, sequence, checksummed)


def _strip_trailer(raw: bytes, *, require_checksum: bool) -> tuple[int | None, bool, bytes]:
    """Verify and remove the `AY…AZ…` trailer: (sequence or None, checksum present, rest)."""
    match = _TRAILER.search(raw[-9:].decode("ascii", errors="replace"))
    if match is None:
        if require_checksum:
            raise ChecksumError("SIP2 message without the error-detection checksum")
        return None, False, raw
    # The checksum covers everything up to and including "AZ"; the 4 hex digits follow it.
    if checksum(raw[:-4]).upper() != match.group(2).upper():
        raise ChecksumError("SIP2 message with a wrong error-detection checksum")
    trailer_length = len(match.group(0))
    sequence = int(match.group(1)) if match.group(1) is not None else None
    return sequence, True, raw[:-trailer_length]


def _variable_fields(text: str, code: str) -> tuple[tuple[str, str], ...]:
    if not text:
        return ()
    pieces = text.split(FIELD_END)
    if pieces[-1] == "":
        pieces.pop()  # the usual final "|"; some servers omit it on the last field
    fields = []
    for piece in pieces:
        if not _FIELD_ID.fullmatch(piece[:2]):
            raise ProtocolError(f"SIP2 message {code}: a variable field without a valid identifier")
        fields.append((piece[:2], piece[2:]))
    return tuple(fields)


# Dates ------------------------------------------------------------------------------------


def format_datetime(moment: datetime) -> str:
    """`moment` as an 18-character SIP2 date, in UTC (`YYYYMMDD   ZHHMMSS`)."""
    moment = moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)
    return f"{moment:%Y%m%d}   Z{moment:%H%M%S}"


def now_sip() -> str:
    return format_datetime(datetime.now(UTC))


def parse_datetime(value: str) -> datetime:
    """An 18-character SIP2 date: aware (UTC) when its zone is `Z`, naive (the sender's local
    time) when blank. Anything else raises `ProtocolError`."""
    if len(value) != 18 or not (value[:8] + value[12:]).isdigit():
        raise ProtocolError("not an 18-character SIP2 date")
    zone = value[8:12].strip()
    try:
        moment = datetime.strptime(value[:8] + value[12:], "%Y%m%d%H%M%S")
    except ValueError:
        raise ProtocolError("not an 18-character SIP2 date") from None
    if zone in ("", "0000"):
        return moment
    if zone == "Z":
        return moment.replace(tzinfo=UTC)
    raise ProtocolError("SIP2 date with a time zone other than blank or Z")


def parse_date(value: str) -> date:
    """A calendar date from an extension field: an 18-character SIP2 date (Evergreen sends
    these), `YYYYMMDD`, or ISO `YYYY-MM-DD` (Koha's `custom_patron_field` templates render
    `dateexpiry` so). Anything else raises `ProtocolError`."""
    value = value.strip()
    if len(value) == 18:
        return parse_datetime(value).date()
    patterns = {8: "%Y%m%d", 10: "%Y-%m-%d"}  # strptime alone would read "2027123" as a date
    if len(value) in patterns:
        try:
            return datetime.strptime(value, patterns[len(value)]).date()
        except ValueError:
            pass
    raise ProtocolError("not a date SIP2 servers send")


def format_date(day: date) -> str:
    """A calendar date as an 18-character SIP2 date at midnight, local time (blank zone)."""
    return f"{day:%Y%m%d}    000000"


# Requests ---------------------------------------------------------------------------------


def login_request(*, user: str, password: str, location: str = "", sequence: int | None = None) -> Message:
    """93: UID and password algorithms 0 (plain: SIP2 has no real encryption; TLS carries it)."""
    fields = [("CN", user), ("CO", password)]
    if location:
        fields.append(("CP", location))
    return Message(LOGIN, "00", tuple(fields), sequence)


def _patron_fields(
    institution: str, patron: str, patron_password: str | None, terminal_password: str | None
) -> list[tuple[str, str]]:
    fields = [("AO", institution), ("AA", patron)]
    if terminal_password is not None:
        fields.append(("AC", terminal_password))
    if patron_password is not None:
        fields.append(("AD", patron_password))
    return fields


def patron_status_request(
    *,
    institution: str,
    patron: str,
    patron_password: str | None,
    terminal_password: str | None = None,
    language: str = "000",
    sequence: int | None = None,
) -> Message:
    """23: language, date; AO institution, AA patron, AC terminal password, AD patron password."""
    fields = _patron_fields(institution, patron, patron_password, terminal_password)
    return Message(PATRON_STATUS, language + now_sip(), tuple(fields), sequence)


def patron_information_request(
    *,
    institution: str,
    patron: str,
    patron_password: str | None,
    terminal_password: str | None = None,
    language: str = "000",
    summary: str = " " * 10,
    sequence: int | None = None,
) -> Message:
    """63: language, date, summary (10 characters, blank: no item lists); then as 23."""
    fields = _patron_fields(institution, patron, patron_password, terminal_password)
    return Message(PATRON_INFORMATION, language + now_sip() + summary, tuple(fields), sequence)


def end_session_request(
    *,
    institution: str,
    patron: str,
    patron_password: str | None = None,
    terminal_password: str | None = None,
    sequence: int | None = None,
) -> Message:
    """35: date; AO, AA, AC, AD."""
    fields = _patron_fields(institution, patron, patron_password, terminal_password)
    return Message(END_PATRON_SESSION, now_sip(), tuple(fields), sequence)


def sc_status_request(*, status: str = "0", print_width: int = 40, sequence: int | None = None) -> Message:
    """99: status code (0 ok), max print width (3 characters, space-padded as in the 3M guide's
    example), protocol version 2.00."""
    return Message(SC_STATUS, f"{status}{print_width:3d}2.00", (), sequence)


def resend_request() -> Message:
    """97: ask the other side to send its last message again (no sequence number)."""
    return Message(REQUEST_ACS_RESEND)


# Answers ----------------------------------------------------------------------------------

# The 14 patron status flags of 24 and 64, in order ("Y" set, space or "N" not set).
PATRON_STATUS_FLAGS: tuple[str, ...] = (
    "charge_privileges_denied",
    "renewal_privileges_denied",
    "recall_privileges_denied",
    "hold_privileges_denied",
    "card_reported_lost",
    "too_many_items_charged",
    "too_many_items_overdue",
    "too_many_renewals",
    "too_many_claims_of_items_returned",
    "too_many_items_lost",
    "excessive_outstanding_fines",
    "excessive_outstanding_fees",
    "recall_overdue",
    "too_many_items_billed",
)


def parse_status_flags(value: str) -> frozenset[str]:
    """The names of the patron status flags set in the 14-character field."""
    if len(value) != 14:
        raise ProtocolError("the SIP2 patron status is 14 characters")
    return frozenset(name for name, flag in zip(PATRON_STATUS_FLAGS, value, strict=True) if flag == "Y")


def format_status_flags(flags: Iterable[str]) -> str:
    chosen = set(flags)
    unknown = chosen - set(PATRON_STATUS_FLAGS)
    if unknown:
        raise FieldValueError("unknown patron status flag")
    return "".join("Y" if name in chosen else " " for name in PATRON_STATUS_FLAGS)


def _yes_no(value: str | None) -> bool | None:
    if value is None:
        return None
    return value.strip().upper() == "Y"


def _count(value: str) -> int | None:
    """A fixed 4-digit count or a variable-length limit; blank means "not given"."""
    value = value.strip()
    return int(value) if value.isdigit() else None


def _expect(message: Message, code: str) -> None:
    if message.code != code:
        raise ProtocolError(f"expected SIP2 message {code}, received {message.code}")


@dataclass(frozen=True)
class LoginResponse:
    ok: bool


def parse_login_response(message: Message) -> LoginResponse:
    _expect(message, LOGIN_RESPONSE)
    if message.fixed not in ("0", "1"):
        raise ProtocolError("SIP2 login answer neither 0 nor 1")
    return LoginResponse(ok=message.fixed == "1")


@dataclass(frozen=True)
class PatronStatusResponse:
    """24 (and the common part of 64). Personal data: never log it."""

    flags: frozenset[str]
    language: str
    transaction_date: str
    institution: str | None
    patron_id: str | None = field(repr=False)
    personal_name: str | None = field(repr=False)
    valid_patron: bool | None
    valid_password: bool | None
    screen_messages: tuple[str, ...] = field(default=(), repr=False)
    fee_amount: str | None = None


def parse_patron_status_response(message: Message) -> PatronStatusResponse:
    _expect(message, PATRON_STATUS_RESPONSE)
    return _patron_status_part(message)


def _patron_status_part(message: Message) -> PatronStatusResponse:
    return PatronStatusResponse(
        flags=parse_status_flags(message.fixed_at(0, 14)),
        language=message.fixed_at(14, 3),
        transaction_date=message.fixed_at(17, 18),
        institution=message.get("AO"),
        patron_id=message.get("AA"),
        personal_name=message.get("AE"),
        valid_patron=_yes_no(message.get("BL")),
        valid_password=_yes_no(message.get("CQ")),
        screen_messages=tuple(message.get_all("AF")),
        fee_amount=message.get("BV"),
    )


@dataclass(frozen=True)
class PatronInformationResponse:
    """64: the patron status, the six counts, the limits, contact details and, when the site
    sends one, the raw value of its expiry extension field. Personal data: never log it."""

    status: PatronStatusResponse
    hold_items: int | None
    overdue_items: int | None
    charged_items: int | None
    fine_items: int | None
    recall_items: int | None
    unavailable_holds: int | None
    hold_items_limit: int | None
    overdue_items_limit: int | None
    charged_items_limit: int | None
    email: str | None = field(repr=False)
    phone: str | None = field(repr=False)
    address: str | None = field(repr=False)
    expiry_raw: str | None


def parse_patron_information_response(
    message: Message, *, expiry_field: str | None
) -> PatronInformationResponse:
    """64. `expiry_field` is the site's extension field for the card's expiry (None: none)."""
    _expect(message, PATRON_INFORMATION_RESPONSE)
    counts = [_count(message.fixed_at(35 + 4 * i, 4)) for i in range(6)]

    def limit(field_id: str) -> int | None:
        value = message.get(field_id)
        return _count(value) if value is not None else None

    return PatronInformationResponse(
        status=_patron_status_part(message),
        hold_items=counts[0],
        overdue_items=counts[1],
        charged_items=counts[2],
        fine_items=counts[3],
        recall_items=counts[4],
        unavailable_holds=counts[5],
        hold_items_limit=limit("BZ"),
        overdue_items_limit=limit("CA"),
        charged_items_limit=limit("CB"),
        email=message.get("BE"),
        phone=message.get("BF"),
        address=message.get("BD"),
        expiry_raw=message.get(expiry_field) if expiry_field else None,
    )


@dataclass(frozen=True)
class EndSessionResponse:
    ended: bool


def parse_end_session_response(message: Message) -> EndSessionResponse:
    _expect(message, END_SESSION_RESPONSE)
    return EndSessionResponse(ended=message.fixed_at(0, 1) == "Y")


@dataclass(frozen=True)
class AcsStatus:
    """98: what the library system says of itself (the health check)."""

    online: bool
    checkin_ok: bool
    checkout_ok: bool
    renewal_policy: bool
    status_update_ok: bool
    offline_ok: bool
    timeout_period: str
    retries_allowed: str
    protocol_version: str
    institution: str | None
    supported_messages: str | None


def parse_acs_status(message: Message) -> AcsStatus:
    _expect(message, ACS_STATUS)
    flags: Sequence[bool] = [c == "Y" for c in message.fixed_at(0, 6)]
    return AcsStatus(
        online=flags[0],
        checkin_ok=flags[1],
        checkout_ok=flags[2],
        renewal_policy=flags[3],
        status_update_ok=flags[4],
        offline_ok=flags[5],
        timeout_period=message.fixed_at(6, 3),
        retries_allowed=message.fixed_at(9, 3),
        protocol_version=message.fixed_at(30, 4),
        institution=message.get("AO"),
        supported_messages=message.get("BX"),
    )
