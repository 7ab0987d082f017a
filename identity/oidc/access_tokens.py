"""JWT access tokens (RFC 9068): issued at the token endpoint, checked at userinfo and introspection.

Every access token is a JWT signed with our key (header `typ: at+jwt`, ES256 by default:
ACCESS_TOKEN_SIGNING_ALG), carrying `iss`, `exp`, `aud`, `sub`, `client_id`, `iat`, `jti`
and `scope` (RFC 9068 §2.2), plus `auth_time` and `acr` when a resident signed in.
A resource server can verify it with our JWKS alone; introspection (RFC 7662) remains
the way to learn that a token was revoked before it expired.

Two kinds, told apart by what they carry:
- **Resident tokens** (authorization code, refresh): `sub` is the subject this client
  knows the resident by (pairwise, identity/oidc/subjects.py) and `auth_time` is present.
  They also keep a database row (its SHA-256 only), because logout, a replayed code or
  refresh token, RFC 7009 revocation and deactivation must end them at once: userinfo and
  introspection accept such a token only while its row exists, unrevoked, for an active
  resident. The lookup is one indexed read joined to the resident (no write).
- **Client tokens** (client credentials): `sub` is the client id and there is no
  `auth_time`. Nothing is written when they are issued; revoking one (RFC 7009) records
  its `jti` until it expires (RevokedAccessToken), which introspection checks.

Signatures use `cryptography` directly (an ES256 signature costs ~0.03 ms, its
verification ~0.07 ms); the parsed keys are kept per key id, which never changes meaning.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import operator
import secrets
import threading
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature, encode_dss_signature
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import DEFERRED
from django.utils import timezone
from jwcrypto import jwk
from oauth2_provider.models import get_access_token_model

from common import json_input
from common.kept_cursor import kept_fetch as prepared_fetch
from consent.gate import AccountGateSQL, account_gate_decision, account_gate_sql
from identity.keys import active_signing_key, published_jwks
from identity.models import User
from identity.oidc import claims as claims_registry
from identity.oidc.models import RevokedAccessToken
from identity.oidc.subjects import subject_for

TYP = "at+jwt"
_ALGORITHMS = frozenset({"ES256", "RS256"})
_lock = threading.Lock()
_private_keys: dict[str, Any] = {}
_public_keys: dict[str, tuple[str, Any]] = {}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _json(value: dict[str, Any]) -> bytes:
    # default=str: a date among an ID token's claims (identity/oidc/claims) as its ISO form.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str).encode("utf-8")


# --- signing --------------------------------------------------------------------------------


def _private_key(kid: str, loaded: Any) -> Any:
    key = _private_keys.get(kid)
    if key is None:
        key = loaded.jwk.get_op_key("sign")
        with _lock:
            _private_keys[kid] = key
    return key


# (typ, alg, kid) -> the encoded protected header: the same bytes every time.
_encoded_headers: dict[tuple[str, str, str], str] = {}


def _encoded_header(typ: str, algorithm: str, kid: str) -> str:
    key = (typ, algorithm, kid)
    encoded = _encoded_headers.get(key)
    if encoded is None:
        encoded = _b64(_json({"typ": typ, "alg": algorithm, "kid": kid}))
        with _lock:
            _encoded_headers[key] = encoded
    return encoded


def sign(claims: dict[str, Any], *, typ: str = TYP, algorithm: str | None = None) -> str:
    """A compact JWS of `claims` with our current key for `algorithm`."""
    algorithm = algorithm or settings.ACCESS_TOKEN_SIGNING_ALG
    loaded = active_signing_key(algorithm)
    header = _encoded_header(typ, loaded.algorithm, loaded.kid)
    signing_input = f"{header}.{_b64(_json(claims))}".encode("ascii")
    key = _private_key(loaded.kid, loaded)
    if loaded.algorithm == "ES256":
        r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
        signature = r.to_bytes(32, "big") + s.to_bytes(32, "big")
    else:
        signature = key.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input.decode('ascii')}.{_b64(signature)}"


def _timestamp(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp())
    return int(value)


def audience(request: Any) -> str | list[str]:
    """RFC 9068 §3: the resource(s) asked for (RFC 8707), else this provider (userinfo).

    `request.resource` is the list settled by the validator (validate_token_resource) before
    the token is generated; a bare string (never expected) counts as one resource, not as
    its characters.
    """
    return _audience(getattr(request, "resource", None) or [])


def _audience(value: str | list[Any]) -> str | list[str]:
    resources = [value] if isinstance(value, str) else [item for item in value if isinstance(item, str)]
    if not resources:
        return settings.ISSUER
    return resources[0] if len(resources) == 1 else resources


def client_token(
    client: Any, *, scopes: list[str], resources: list[Any], expires_in: int, jkt: str | None
) -> str:
    """A client-credentials access token (RFC 9068; `sub` = client_id, no `auth_time`): the
    claims generate() signs for an oauthlib request without a resident, from the values the
    client-credentials grant settled (identity/oidc/token_endpoint.py)."""
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.ISSUER,
        "exp": now + int(expires_in),
        "aud": _audience(resources),
        "sub": client.client_id,
        "client_id": client.client_id,
        "iat": now,
        "jti": secrets.token_urlsafe(18),
        "scope": " ".join(scopes),
    }
    if jkt:
        claims["cnf"] = {"jkt": jkt}  # RFC 9449 §6.1: bound to this DPoP key
    return sign(claims)


# oauthlib's token alphabet (oauthlib.common.UNICODE_ASCII_CHARACTER_SET) and length.
_TOKEN_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
_TOKEN_LENGTH = 30
_TOKEN_BYTE_LIMIT = 256 - 256 % len(_TOKEN_ALPHABET)  # 248: bytes at or above are dropped


def random_token(request: Any = None, refresh_token: bool = False) -> str:
    """A refresh token (OAUTH2_PROVIDER["REFRESH_TOKEN_GENERATOR"]): what oauthlib's
    random_token_generator returns (30 characters, each drawn uniformly from its 62-letter
    alphabet by the operating system's CSPRNG), from one read of random bytes instead of a
    SystemRandom call per character. Uniform: a byte below 248 (4 × 62) picks letter
    byte % 62, the others are dropped and more are read."""
    letters: list[str] = []
    while True:
        for byte in secrets.token_bytes(_TOKEN_LENGTH + 8):
            if byte < _TOKEN_BYTE_LIMIT:
                letters.append(_TOKEN_ALPHABET[byte % len(_TOKEN_ALPHABET)])
                if len(letters) == _TOKEN_LENGTH:
                    return "".join(letters)


def generate(request: Any) -> str:
    """oauthlib's access-token generator (OAUTH2_PROVIDER["ACCESS_TOKEN_GENERATOR"])."""

    client = request.client
    user = getattr(request, "user", None)
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": settings.ISSUER,
        "exp": now + int(request.expires_in),
        "aud": audience(request),
        "sub": subject_for(client, user) if user is not None else client.client_id,
        "client_id": client.client_id,
        "iat": now,
        "jti": secrets.token_urlsafe(18),
        "scope": " ".join(request.scopes or []),
    }
    if user is not None:
        auth_time = _timestamp(getattr(request, "auth_time", None) or user.last_login) or now
        claims["auth_time"] = auth_time
        acr = getattr(request, "cum_acr", "")
        if acr:
            claims["acr"] = acr
    jkt = getattr(request, "cum_dpop_jkt", None)
    if jkt:
        claims["cnf"] = {"jkt": jkt}  # RFC 9449 §6.1: bound to this DPoP key
    return sign(claims)


# --- verification ---------------------------------------------------------------------------


def _public_key(kid: str) -> tuple[str, Any] | None:
    """(alg, key) of a key we publish now, else None (unknown or expired key)."""
    for jwk_dict in published_jwks()["keys"]:
        if jwk_dict.get("kid") == kid:
            break
    else:
        return None
    cached = _public_keys.get(kid)
    if cached is None:
        cached = (jwk_dict["alg"], jwk.JWK(**jwk_dict).get_op_key("verify"))
        with _lock:
            _public_keys[kid] = cached
    return cached


def _signature_valid(algorithm: str, key: Any, signing_input: bytes, signature: bytes) -> bool:
    try:
        if algorithm == "ES256":
            if len(signature) != 64 or not isinstance(key, ec.EllipticCurvePublicKey):
                return False
            der = encode_dss_signature(
                int.from_bytes(signature[:32], "big"), int.from_bytes(signature[32:], "big")
            )
            key.verify(der, signing_input, ec.ECDSA(hashes.SHA256()))
        else:
            if not isinstance(key, rsa.RSAPublicKey):
                return False
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


# Encoded headers that passed the checks -> (alg, kid): every token we sign with one key has
# the same header. Bounded: emptied when full (only headers of the accepted form get in).
_checked_headers: dict[str, tuple[str, str]] = {}
_CHECKED_HEADERS_MAX = 64


def _checked_header(encoded: str) -> tuple[str, str] | None:
    """(alg, kid) of a header {typ: at+jwt, alg: ES256 or RS256, kid: a string}, else None."""
    known = _checked_headers.get(encoded)
    if known is not None:
        return known
    try:
        header = json_input.loads(_unb64(encoded))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(header, dict) or header.get("typ") != TYP or set(header) - {"typ", "alg", "kid"}:
        return None
    algorithm, kid = header.get("alg"), header.get("kid")
    if algorithm not in _ALGORITHMS or not isinstance(kid, str):
        return None
    with _lock:
        if len(_checked_headers) >= _CHECKED_HEADERS_MAX:
            _checked_headers.clear()
        _checked_headers[encoded] = (algorithm, kid)
    return algorithm, kid


def decode(token: str, *, now: float | None = None, verify: bool = True) -> dict[str, Any] | None:
    """The claims of one of our unexpired access tokens, or None for anything else.

    Refused: not three base64url parts, a header other than {typ: at+jwt, alg: ES256 or
    RS256 matching the key, kid of a key we publish}, a bad signature, another issuer,
    missing or expired `exp`, missing `jti`/`client_id`/`sub`/`scope`.

    `verify=False` skips only the signature: for callers that authenticate the whole
    token string another way (live_token: the SHA-256 of a resident token is in our
    database only if we issued exactly that string).
    """
    if not isinstance(token, str) or token.count(".") != 2 or len(token) > 8192:
        return None
    encoded_header, encoded_claims, encoded_signature = token.split(".")
    try:
        signature = _unb64(encoded_signature)
    except (ValueError, binascii.Error):
        return None
    checked = _checked_header(encoded_header)
    if checked is None:
        return None
    algorithm, kid = checked
    if verify:
        published = _public_key(kid)
        if published is None or published[0] != algorithm:
            return None
        signing_input = f"{encoded_header}.{encoded_claims}".encode("ascii")
        if not _signature_valid(algorithm, published[1], signing_input, signature):
            return None
    try:
        claims = json_input.loads(_unb64(encoded_claims))
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != settings.ISSUER:
        return None
    exp = claims.get("exp")
    if not isinstance(exp, int) or exp <= (time.time() if now is None else now):
        return None
    if not all(isinstance(claims.get(name), str) for name in ("jti", "client_id", "sub", "scope")):
        return None
    return claims


def is_client_token(claims: dict[str, Any]) -> bool:
    """A client-credentials token: no resident, so no database row (see module docstring)."""
    return claims["sub"] == claims["client_id"] and "auth_time" not in claims


def checksum(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


# --- state of a resident token ----------------------------------------------------------------

# The resident's columns read at userinfo: what the subject and the checks use, plus what the
# claim providers read (identity.oidc.claims.resident_user_fields); at introspection
# (live_token) only the checks' own (`lean`: it releases no claim). Any other field of the
# instance loads lazily if ever touched.
_RESIDENT_BASE_FIELDS = ("id", "is_active")


class _ResidentQuery:
    """The statement of one (backend, with gate, claims registry generation, form), and how
    to turn its row into a User as Model.from_db would, worked out once:

    - `function`: the statement calls the PL/pgSQL functions (PostgreSQL: migration identity
      0011's `oidc_token_resident`, and consent 0013's `consent_gate` with the gate), whose
      plans the backend keeps; else the plain statement (SQLite, and the reference in tests);
    - `converters`: (position, the column's database converters, the column expression),
      for the columns that have any (the ORM applies them, e.g. JSON on SQLite);
    - `slots`: for each concrete field of User in order, its position in the row or -1
      (a deferred field: Model.from_db's DEFERRED, loaded lazily if ever touched);
      `arguments` picks them from the row's values followed by DEFERRED (position `size`);
    - `epochs`: the positions of the date-time columns the function form selects as whole
      microseconds since 1970 (`_epoch_micros`), turned back into the aware datetime
      Django's own loader gives (`_from_epoch_micros`): psycopg's C integer loader instead
      of Django's timestamptz loader, a Python subclass of psycopg's Python one (which
      parses the text form in Python at every read).
    """

    __slots__ = ("arguments", "converters", "epochs", "function", "size", "slots", "sql")

    def __init__(
        self,
        sql: str,
        size: int,
        converters: list[tuple[int, list[Any], Any]],
        slots: list[int],
        function: bool,
        epochs: tuple[int, ...] = (),
    ):
        self.sql = sql
        self.size = size
        self.converters = converters
        self.slots = slots
        # User has more than one concrete field: itemgetter gives a tuple.
        self.arguments = operator.itemgetter(*[slot if slot >= 0 else size for slot in slots])
        self.function = function
        self.epochs = epochs


# (vendor, with gate, claims registry generation, plain, date-times as epochs, lean) -> the
# statement and its readers.
_resident_query: dict[tuple[str, bool, int, bool, bool, bool], _ResidentQuery] = {}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _epoch_micros(column: str) -> str:
    """A timestamptz column as whole microseconds since 1970 (bigint; NULL stays NULL).
    extract() gives an exact numeric (PostgreSQL 14+; 15+ is required), and PostgreSQL keeps
    microseconds: the product is an integer, cast without rounding."""
    return f"(extract(epoch from {column}) * 1000000)::bigint"


def _from_epoch_micros(value: int | None) -> datetime | None:
    """What Django's loader gives for the column `_epoch_micros` read (connection in UTC)."""
    return None if value is None else _EPOCH + timedelta(microseconds=value)


def _resident_token_query(
    db_connection: Any, *, with_gate: bool, plain: bool = False, lean: bool = False
) -> _ResidentQuery:
    """The statement for this backend (_ResidentQuery), built once.

    `with_gate` adds the consent ledger's gate for one purpose to the same statement, after
    the resident's columns: on PostgreSQL a call of `consent_gate` (one column, the answer),
    else consent.gate.account_gate_sql's joins and columns. `plain` asks for the plain
    statement on PostgreSQL too (the reference the function form is tested against). `lean`
    selects only `_RESIDENT_BASE_FIELDS` (introspection: no claim is released from the row).
    """
    function = db_connection.vendor == "postgresql" and not plain
    # Date-times as epochs only where Django's loader gives UTC datetimes (USE_TZ, the
    # connection's TIME_ZONE unset: the production settings); else Django's loader.
    epoch = function and db_connection.timezone is UTC
    key = (db_connection.vendor, with_gate, claims_registry.generation(), plain, epoch, lean)
    cached = _resident_query.get(key)
    if cached is not None:
        return cached

    wanted = {*_RESIDENT_BASE_FIELDS, *(() if lean else claims_registry.resident_user_fields())}
    token = get_access_token_model()._meta
    user = User._meta
    # In the model's field order, as Model.from_db() takes the values.
    fields = [field for field in user.concrete_fields if field.name in wanted]
    # Each column's database converters (the ORM applies them, e.g. JSON on SQLite).
    # Field.get_db_converters is Django's (the ORM calls it); django-stubs lacks it.
    found = [
        db_connection.ops.get_db_converters(field.get_col(user.db_table))
        + field.get_db_converters(db_connection)  # type: ignore[attr-defined]
        for field in fields
    ]
    epochs = tuple(
        position
        for position, field in enumerate(fields)
        if epoch and field.get_internal_type() == "DateTimeField" and not found[position]
    )
    columns = ", ".join(
        _epoch_micros(f'u."{field.column}"') if position in epochs else f'u."{field.column}"'
        for position, field in enumerate(fields)
    )
    # Only table and column names from the models are interpolated; values are parameters.
    if function:
        # The function returns the token's resident as a whole identity_user row (migration
        # identity 0011): the same columns are selected from it.
        if with_gate:
            columns += f', consent_gate(u."{user.pk.column}", NULL, %s, %s)'
        sql = f"SELECT {columns} FROM oidc_token_resident(%s, %s) u"  # noqa: S608
    else:
        joins = ""
        if with_gate:
            gate = account_gate_sql(f'u."{user.pk.column}"')
            columns += ", " + gate.columns
            joins = " " + gate.joins
        sql = (
            f'SELECT {columns} FROM "{user.db_table}" u JOIN "{token.db_table}" t '  # noqa: S608
            f'ON t."{token.get_field("user").column}" = u."{user.pk.column}"{joins} '
            f'WHERE t."{token.get_field("token_checksum").column}" = %s '
            f'AND t."{token.get_field("expires").column}" > %s'
        )
    converters = []
    for position, field in enumerate(fields):
        if found[position]:
            converters.append((position, found[position], field.get_col(user.db_table)))
    selected = {field.attname: position for position, field in enumerate(fields)}
    slots = [selected.get(field.attname, -1) for field in user.concrete_fields]
    query = _ResidentQuery(sql, len(fields), converters, slots, function, epochs)
    _resident_query[key] = query
    return query


def _read_resident(
    token: str, purpose_code: str | None, *, plain: bool = False, lean: bool = False
) -> tuple[Any | None, bool | None]:
    """(active resident or None, the consent gate's answer for `purpose_code` if asked: None
    when the purpose is unknown) for a resident token. `plain`: the plain statement;
    `lean`: only the resident's id and is_active read (_resident_token_query)."""

    db = connections[DEFAULT_DB_ALIAS]  # what `connection` proxies to, looked up once
    query = _resident_token_query(db, with_gate=purpose_code is not None, plain=plain, lean=lean)
    # What the `expires` field's get_db_prep_value gives for an aware datetime.
    now = db.ops.adapt_datetimefield_value(timezone.now())
    params: list[Any]
    if query.function:
        # The gate's instant is the application's clock too (consent.gate), the same instant.
        params = [checksum(token), now]
        if purpose_code is not None:
            params = [purpose_code, now, *params]
    else:
        params = AccountGateSQL.params(purpose_code) if purpose_code is not None else []
        params += [checksum(token), now]
    # On a cursor kept per connection, prepared where the deployment allows it
    # (common/kept_cursor.py: what a Django cursor does around it, without building one);
    # the function form binds its parameters on the server (the functions' declared
    # argument types: nothing for the client to quote into the text).
    row = prepared_fetch(query.sql, params, db=db, server_binding=query.function)
    if row is None:
        return None, None
    values = list(row[: query.size])
    for position in query.epochs:
        values[position] = _from_epoch_micros(values[position])
    for position, converters, column in query.converters:
        value = values[position]
        for converter in converters:
            value = converter(value, column, db)
        values[position] = value
    # Model.from_db, with the deferred fields' places worked out once (_ResidentQuery).
    model: Any = User  # positional values in field order, as Model.from_db passes them
    values.append(DEFERRED)  # at position query.size
    user = model(*query.arguments(values))
    user._state.adding = False
    user._state.db = db.alias
    if not user.is_active:
        return None, None
    if purpose_code is None:
        return user, None
    if query.function:
        return user, row[query.size]  # consent_gate's answer: NULL for an unknown purpose
    return user, account_gate_decision(tuple(row[query.size :]))


def resident_of(token: str, claims: dict[str, Any]) -> Any | None:
    """The active resident a live resident access token belongs to, else None.

    One indexed read (the token's SHA-256 joined to the resident), no write. None when the
    row is gone (revoked: sign-out, replayed code or refresh token, RFC 7009, session
    revoked) or past its expiry, or the resident is deactivated. The token's client and
    scope are the signed claims already checked by decode(): the row is this very token's.
    """
    if is_client_token(claims):
        return None
    return _read_resident(token, None)[0]


def resident_and_consent(
    token: str, claims: dict[str, Any], purpose_code: str
) -> tuple[Any | None, bool | None]:
    """resident_of, plus the consent ledger's answer for `purpose_code`, in one statement.

    The answer is None when the purpose does not exist (the caller asks the ledger the
    usual way then).
    """
    if is_client_token(claims):
        return None, None
    return _read_resident(token, purpose_code)


def live_token(token: str, claims: dict[str, Any] | None = None) -> tuple[dict[str, Any], Any | None] | None:
    """(claims, resident) of one of our access tokens that is valid now, else None.

    - A client token (client credentials; resident None): its signature is verified and
      its `jti` must not have been revoked (RevokedAccessToken).
    - A resident token: one indexed read (resident_of's, selecting only the resident's id and
      is_active: its other fields are deferred, loaded if ever touched, as after `.only()`)
      must find its row, unrevoked and unexpired, and the resident active. That read also
      authenticates the token: only the SHA-256 of a string we issued is stored, so a token
      altered in any byte (claims, header or signature) has no row. Its signature is
      therefore not verified again here; resource servers that validate it locally do
      verify it (docs/partners.md).

    `claims`: what `decode(token, verify=False)` gave the caller for this very token, if it
    already asked (not decoded twice).
    """

    if claims is None:
        claims = decode(token, verify=False)
    if claims is None:
        return None
    if is_client_token(claims):
        if decode(token) is None or RevokedAccessToken.objects.filter(jti=claims["jti"]).exists():
            return None
        return claims, None
    user = _read_resident(token, None, lean=True)[0]  # a resident token: is_client_token is False
    if user is None:
        return None
    return claims, user
