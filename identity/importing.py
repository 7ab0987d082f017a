"""Migration of accounts from the legacy metropolitan account (2015 portal) — JSON lines.

Input: one JSON object per line (UTF-8; blank lines are ignored; unknown keys ignored)::

    {"email": "a@example.org", "given_name": "Camille", "family_name": "Martin",
     "email_verified": true, "password_hash": "pbkdf2_sha256$...",
     "preferred_language": "fr", "legacy_id": "12345"}

Fields:

- ``email`` (required): trimmed and lower-cased, must be a valid address (≤ 254 chars).
- ``email_verified`` (required): JSON ``true`` or ``false``; nothing else is guessed.
- ``password_hash`` (required): see below. Stored as is (after mapping), never re-hashed.
- ``given_name`` / ``family_name``: strings ≤ 150 chars; missing or null means empty.
- ``preferred_language`` (optional): ``fr`` or ``en`` (``fr-FR`` → ``fr``); default ``fr``.
- ``legacy_id`` (optional): string or integer ≤ 64 chars, kept in the audit row.

Accepted ``password_hash`` formats and how they are stored (see identity.hashers):

=====================================================  =========================================
input                                                  stored as
=====================================================  =========================================
``pbkdf2_sha256$<iterations>$<salt>$<b64 32 bytes>``   unchanged (Django)
``pbkdf2_sha1$<iterations>$<salt>$<b64 20 bytes>``     unchanged (Django)
``bcrypt_sha256$$2a|2b$<cost>$<53 chars>``             unchanged (Django)
``argon2$argon2id|argon2i|argon2d$v=19$m=,t=,p=$..``   unchanged (Django); re-hashed at sign-in
``$2a$`` / ``$2b$`` / ``$2y$<cost>$<53 chars>``        ``bcrypt$<raw>`` (raw bcrypt)
``bcrypt$$2a|2b|2y$...``                               unchanged (Django's bcrypt format)
``sha1$<salt>$<40 hex>``                               ``legacy_sha1$<order>$<salt>$<hex>``
``sha256$<salt>$<64 hex>``                             ``legacy_sha256$<order>$<salt>$<hex>``
``legacy_sha1|legacy_sha256$sp|ps$<salt>$<hex>``       unchanged (already our format)
=====================================================  =========================================

``sha1$``/``sha256$`` digests are H(salt ‖ password) by default (``sp``, as the 2015 portal
and old Django wrote them); ``digest_order="ps"`` (``--digest-order ps``) reads them as
H(password ‖ salt). The salt is text and may contain ``$``; hex is stored lower-case.
Work factors above what a sign-in can afford are refused (denial-of-service guard):
PBKDF2 > 5,000,000 iterations, bcrypt cost > 16, Argon2 m > 256 MiB, t > 16, p > 16.
Everything else (md5, unsalted digests, crypt(3) DES, …) is rejected as unknown.

Behaviour:

- Streaming: the input is read line by line (a line longer than 64 KiB is rejected without
  being held in memory); valid rows are grouped in batches (default 1,000); each batch is
  one transaction (``bulk_create`` of users and of their ``account.imported`` audit rows).
  Per row, only a keyed 8-byte fingerprint of its email is kept, to detect duplicates
  within the file (≈ 60 bytes a row).
- A row whose email already has an account is skipped and reported as already present:
  the existing account (and its password) is never changed. Re-running the same file
  therefore creates nothing new, and re-running after an interruption completes the import.
- A bad row (invalid JSON or UTF-8, missing/malformed field, unknown hash format, a second
  row with the same email in the file) is rejected with its line number and reason, and
  nothing of it is written. The first valid row for an email wins.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

from django.core.exceptions import ValidationError
from django.core.validators import EmailValidator
from django.db import IntegrityError, transaction

from identity.hashers import DIGEST_ORDERS, PASSWORD_THEN_SALT, RAW_BCRYPT_PREFIXES, SALT_THEN_PASSWORD
from identity.models import AuditEvent, User, normalize_email

IMPORT_EVENT = "account.imported"
IMPORT_SOURCE = "legacy-metropolitan-account"
MAX_LINE_BYTES = 64 * 1024
PASSWORD_FIELD_MAX = 128  # AbstractBaseUser.password max_length
NAME_MAX = 150
LEGACY_ID_MAX = 64
LANGUAGES = ("fr", "en")

MAX_PBKDF2_ITERATIONS = 5_000_000
MAX_BCRYPT_COST = 16
MAX_ARGON2_MEMORY_KIB = 256 * 1024
MAX_ARGON2_TIME = 16
MAX_ARGON2_PARALLELISM = 16

_RAW_BCRYPT = re.compile(r"\$(2[aby])\$(\d\d)\$[./A-Za-z0-9]{53}")
_PBKDF2 = re.compile(r"(\d{1,9})\$([^$]+)\$([A-Za-z0-9+/]+={0,2})")
_ARGON2 = re.compile(
    r"\$argon2(?:id|i|d)\$(?:v=(?:16|19)\$)?m=(\d{1,10}),t=(\d{1,10}),p=(\d{1,3})"
    r"\$[A-Za-z0-9+/]+={0,2}\$[A-Za-z0-9+/]+={0,2}"
)
_HEX = re.compile(r"[0-9a-fA-F]+")
_DIGEST_HEX_LENGTH = {"sha1": 40, "sha256": 64}
_PBKDF2_BYTES = {"pbkdf2_sha256": 32, "pbkdf2_sha1": 20}

_email_validator = EmailValidator()


class RowRejected(ValueError):
    """Why one input row cannot be imported (an operator-facing reason, no personal data)."""


@dataclass(slots=True)
class ImportRow:
    line: int
    email: str
    password: str
    scheme: str
    email_verified: bool
    given_name: str = ""
    family_name: str = ""
    preferred_language: str = "fr"
    legacy_id: str | None = None


@dataclass
class ImportStats:
    read: int = 0
    imported: int = 0
    skipped: int = 0
    rejected: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def elapsed(self) -> float:
        return max(time.monotonic() - self.started, 1e-9)

    @property
    def rate(self) -> float:
        return self.read / self.elapsed


# --- password hashes ---------------------------------------------------------------------


def _raw_bcrypt(value: str) -> str:
    match = _RAW_BCRYPT.fullmatch(value)
    if not match:
        raise RowRejected("malformed bcrypt hash")
    cost = int(match.group(2))
    if not 4 <= cost <= MAX_BCRYPT_COST:
        raise RowRejected(f"bcrypt cost {cost} outside 4..{MAX_BCRYPT_COST}")
    return value


def _salted_digest(digest: str, order: str, rest: str) -> str:
    salt, sep, hexdigest = rest.rpartition("$")
    if not sep:
        raise RowRejected(f"malformed {digest} hash (expected {digest}$<salt>$<hex digest>)")
    if len(hexdigest) != _DIGEST_HEX_LENGTH[digest] or not _HEX.fullmatch(hexdigest):
        raise RowRejected(f"malformed {digest} hash (digest must be {_DIGEST_HEX_LENGTH[digest]} hex digits)")
    return f"legacy_{digest}${order}${salt}${hexdigest.lower()}"


def _stored_pbkdf2(algorithm: str, rest: str, value: str, digest_order: str) -> tuple[str, str]:
    match = _PBKDF2.fullmatch(rest)
    if not match:
        raise RowRejected(f"malformed {algorithm} hash")
    iterations = int(match.group(1))
    if not 1 <= iterations <= MAX_PBKDF2_ITERATIONS:
        raise RowRejected(f"{algorithm} iterations {iterations} outside 1..{MAX_PBKDF2_ITERATIONS}")
    try:
        raw = base64.b64decode(match.group(3), validate=True)
    except (binascii.Error, ValueError):
        raise RowRejected(f"malformed {algorithm} hash") from None
    if len(raw) != _PBKDF2_BYTES[algorithm]:
        raise RowRejected(f"malformed {algorithm} hash (wrong digest length)")
    return value, algorithm


def _stored_bcrypt_sha256(algorithm: str, rest: str, value: str, digest_order: str) -> tuple[str, str]:
    if rest.startswith("$2y$"):
        raise RowRejected("malformed bcrypt_sha256 hash")
    return "bcrypt_sha256$" + _raw_bcrypt(rest), algorithm


def _stored_bcrypt(algorithm: str, rest: str, value: str, digest_order: str) -> tuple[str, str]:
    return "bcrypt$" + _raw_bcrypt(rest), algorithm


def _stored_argon2(algorithm: str, rest: str, value: str, digest_order: str) -> tuple[str, str]:
    match = _ARGON2.fullmatch("$" + rest)
    if not match:
        raise RowRejected("malformed argon2 hash")
    memory, time_cost, parallelism = (int(group) for group in match.groups())
    if not (
        1 <= memory <= MAX_ARGON2_MEMORY_KIB
        and 1 <= time_cost <= MAX_ARGON2_TIME
        and 1 <= parallelism <= MAX_ARGON2_PARALLELISM
    ):
        raise RowRejected("argon2 parameters outside the accepted range")
    return value, algorithm


def _stored_digest(algorithm: str, rest: str, value: str, digest_order: str) -> tuple[str, str]:
    return _salted_digest(algorithm, digest_order, rest), f"legacy_{algorithm}"


def _stored_legacy_digest(algorithm: str, rest: str, value: str, digest_order: str) -> tuple[str, str]:
    order, sep, rest = rest.partition("$")
    if not sep or order not in DIGEST_ORDERS:
        raise RowRejected(f"malformed {algorithm} hash (order must be sp or ps)")
    return _salted_digest(algorithm.removeprefix("legacy_"), order, rest), algorithm


# `<algorithm>$<rest>` -> f(algorithm, rest, whole value, digest order) -> (stored, scheme).
_HASH_FORMATS: dict[str, Callable[[str, str, str, str], tuple[str, str]]] = {
    **dict.fromkeys(_PBKDF2_BYTES, _stored_pbkdf2),
    "bcrypt_sha256": _stored_bcrypt_sha256,
    "bcrypt": _stored_bcrypt,
    "argon2": _stored_argon2,
    **dict.fromkeys(_DIGEST_HEX_LENGTH, _stored_digest),
    "legacy_sha1": _stored_legacy_digest,
    "legacy_sha256": _stored_legacy_digest,
}


def stored_password(value: Any, *, digest_order: str = SALT_THEN_PASSWORD) -> tuple[str, str]:
    """Map a legacy hash to the form stored in User.password. Returns (stored, scheme).

    Raises RowRejected for anything that is not one of the documented formats.
    """
    if digest_order not in DIGEST_ORDERS:
        raise ValueError(f"digest_order must be one of {DIGEST_ORDERS}")
    if not isinstance(value, str) or not value:
        raise RowRejected("missing password_hash")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise RowRejected("password_hash contains whitespace or control characters")

    if value.startswith(RAW_BCRYPT_PREFIXES):
        stored, scheme = "bcrypt$" + _raw_bcrypt(value), "bcrypt"
    else:
        algorithm, sep, rest = value.partition("$")
        mapping = _HASH_FORMATS.get(algorithm) if sep else None
        if mapping is None:
            raise RowRejected("unknown password hash format")
        stored, scheme = mapping(algorithm, rest, value, digest_order)
    if len(stored) > PASSWORD_FIELD_MAX:
        raise RowRejected(f"password hash longer than {PASSWORD_FIELD_MAX} characters once stored")
    return stored, scheme


# --- rows --------------------------------------------------------------------------------


def _optional_text(obj: dict[str, Any], key: str, max_length: int) -> str:
    value = obj.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise RowRejected(f"{key} must be a string")
    value = value.strip()
    if len(value) > max_length:
        raise RowRejected(f"{key} longer than {max_length} characters")
    return value


def _email(obj: dict[str, Any]) -> str:
    raw_email = obj.get("email")
    if raw_email is None or (isinstance(raw_email, str) and not raw_email.strip()):
        raise RowRejected("missing email")
    if not isinstance(raw_email, str):
        raise RowRejected("malformed email")
    email = normalize_email(raw_email)
    try:
        _email_validator(email)
    except ValidationError:
        raise RowRejected("malformed email") from None
    if len(email) > 254:
        raise RowRejected("malformed email (longer than 254 characters)")
    return email


def _language(obj: dict[str, Any]) -> str:
    language = obj.get("preferred_language")
    if language is None or language == "":
        return "fr"
    if not isinstance(language, str):
        raise RowRejected("preferred_language must be a string")
    language = re.split(r"[-_]", language.strip().lower(), maxsplit=1)[0]
    if language not in LANGUAGES:
        raise RowRejected(f"preferred_language must be one of {', '.join(LANGUAGES)}")
    return language


def _legacy_id(obj: dict[str, Any]) -> str | None:
    legacy_id = obj.get("legacy_id")
    if legacy_id is None:
        return None
    if isinstance(legacy_id, bool) or not isinstance(legacy_id, str | int):
        raise RowRejected("legacy_id must be a string or an integer")
    legacy_id = str(legacy_id)
    if len(legacy_id) > LEGACY_ID_MAX:
        raise RowRejected(f"legacy_id longer than {LEGACY_ID_MAX} characters")
    return legacy_id


def parse_row(text: str, *, line: int, digest_order: str = SALT_THEN_PASSWORD) -> ImportRow:
    """Validate one decoded JSON line. Raises RowRejected with the first problem found."""
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise RowRejected(f"invalid JSON ({exc.msg} at column {exc.colno})") from None
    except (ValueError, RecursionError):
        raise RowRejected("invalid JSON") from None
    if not isinstance(obj, dict):
        raise RowRejected("not a JSON object")

    email = _email(obj)

    if "email_verified" not in obj:
        raise RowRejected("missing email_verified")
    email_verified = obj["email_verified"]
    if not isinstance(email_verified, bool):
        raise RowRejected("email_verified must be true or false")

    password, scheme = stored_password(obj.get("password_hash"), digest_order=digest_order)

    language = _language(obj)
    legacy_id = _legacy_id(obj)

    return ImportRow(
        line=line,
        email=email,
        password=password,
        scheme=scheme,
        email_verified=email_verified,
        given_name=_optional_text(obj, "given_name", NAME_MAX),
        family_name=_optional_text(obj, "family_name", NAME_MAX),
        preferred_language=language,
        legacy_id=legacy_id,
    )


def iter_lines(
    stream: IO[Any], *, max_line_bytes: int = MAX_LINE_BYTES
) -> Iterator[tuple[int, bytes | None]]:
    """Yield (line number, raw bytes) with at most max_line_bytes held; None for a too-long line."""
    line = 0
    while True:
        chunk = stream.readline(max_line_bytes + 1)
        if not chunk:
            return
        if isinstance(chunk, str):  # a text stream (e.g. a test's StringIO)
            chunk = chunk.encode("utf-8")
        line += 1
        if len(chunk) > max_line_bytes and not chunk.endswith(b"\n"):
            while True:  # drop the rest of the line without keeping it
                more = stream.readline(max_line_bytes)
                if not more or more[-1:] in ("\n", b"\n"):
                    break
            yield line, None
            continue
        yield line, chunk


# --- the importer ------------------------------------------------------------------------

RejectCallback = Callable[[int, str, bytes | None], None]
SkipCallback = Callable[[int, str], None]
ProgressCallback = Callable[[ImportStats], None]


def _noop(*args: Any) -> None:
    return None


class AccountImporter:
    """Streams rows into batches; one transaction per batch; idempotent by email."""

    def __init__(
        self,
        *,
        batch_size: int = 1000,
        dry_run: bool = False,
        digest_order: str = SALT_THEN_PASSWORD,
        progress_every: int = 10_000,
        on_reject: RejectCallback = _noop,
        on_skip: SkipCallback = _noop,
        on_progress: ProgressCallback = _noop,
    ) -> None:
        if batch_size < 1:
            raise ValueError("batch_size must be positive")
        if digest_order not in (SALT_THEN_PASSWORD, PASSWORD_THEN_SALT):
            raise ValueError("digest_order must be 'sp' or 'ps'")
        self.batch_size = batch_size
        self.dry_run = dry_run
        self.digest_order = digest_order
        self.progress_every = max(progress_every, 0)
        self.on_reject = on_reject
        self.on_skip = on_skip
        self.on_progress = on_progress
        self.stats = ImportStats()
        # Fingerprints of the emails of valid rows seen so far (duplicates within the
        # file). Keyed per run so that nobody can craft colliding addresses.
        self._seen: set[int] = set()
        self._fingerprint_key = os.urandom(16)

    def _fingerprint(self, email: str) -> int:
        digest = hashlib.blake2b(email.encode("utf-8"), digest_size=8, key=self._fingerprint_key).digest()
        return int.from_bytes(digest, "big")

    def _reject(self, line: int, reason: str, raw: bytes | None) -> None:
        self.stats.rejected += 1
        self.on_reject(line, reason, raw)

    def run(self, stream: IO[Any]) -> ImportStats:
        batch: list[ImportRow] = []
        for line, raw in iter_lines(stream):
            if raw is None:
                self.stats.read += 1
                self._reject(line, f"line longer than {MAX_LINE_BYTES} bytes", None)
            elif raw.strip():
                self.stats.read += 1
                row = self._parse(line, raw)
                if row is not None:
                    batch.append(row)
                    if len(batch) >= self.batch_size:
                        self._flush(batch)
                        batch = []
            else:
                continue  # blank lines are not rows
            if self.progress_every and self.stats.read % self.progress_every == 0:
                self.on_progress(self.stats)
        if batch:
            self._flush(batch)
        return self.stats

    def _parse(self, line: int, raw: bytes) -> ImportRow | None:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._reject(line, "not valid UTF-8", raw)
            return None
        if line == 1:
            text = text.removeprefix("\ufeff")
        try:
            row = parse_row(text, line=line, digest_order=self.digest_order)
        except RowRejected as exc:
            self._reject(line, str(exc), raw)
            return None
        fingerprint = self._fingerprint(row.email)
        if fingerprint in self._seen:
            self._reject(line, "duplicate email within the file (an earlier row has it)", raw)
            return None
        self._seen.add(fingerprint)
        return row

    def _skip(self, row: ImportRow) -> None:
        self.stats.skipped += 1
        self.on_skip(row.line, "already present: an account with this email exists (left unchanged)")

    def _flush(self, batch: list[ImportRow]) -> None:
        existing = set(
            User.objects.filter(email__in=[row.email for row in batch]).values_list("email", flat=True)
        )
        fresh = []
        for row in batch:
            if row.email in existing:
                self._skip(row)
            else:
                fresh.append(row)
        if not fresh:
            return
        if self.dry_run:
            self.stats.imported += len(fresh)
            return
        try:
            with transaction.atomic():
                users = User.objects.bulk_create([self._user(row) for row in fresh])
                AuditEvent.objects.bulk_create(
                    [self._audit(row, user) for row, user in zip(fresh, users, strict=True)]
                )
        except IntegrityError:
            # Someone created one of these accounts between our check and the insert:
            # fall back to one transaction per row so the others still go in.
            self._insert_one_by_one(fresh)
            return
        self.stats.imported += len(fresh)

    def _insert_one_by_one(self, rows: list[ImportRow]) -> None:
        for row in rows:
            try:
                with transaction.atomic():
                    user = self._user(row)
                    user.save(force_insert=True)
                    self._audit(row, user).save(force_insert=True)
            except IntegrityError:
                self._skip(row)
            else:
                self.stats.imported += 1

    @staticmethod
    def _user(row: ImportRow) -> User:
        return User(
            email=row.email,
            password=row.password,
            email_verified=row.email_verified,
            given_name=row.given_name,
            family_name=row.family_name,
            preferred_language=row.preferred_language,
        )

    @staticmethod
    def _audit(row: ImportRow, user: User) -> AuditEvent:
        data: dict[str, Any] = {"source": IMPORT_SOURCE, "hash_scheme": row.scheme}
        if row.legacy_id is not None:
            data["legacy_id"] = row.legacy_id
        return AuditEvent(event=IMPORT_EVENT, subject_user_id=user.pk, data=data)
