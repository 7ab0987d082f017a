"""DPoP proofs (RFC 9449) checked by a resource server: a standalone helper for partners.

This module imports nothing from Django or from the rest of this project (only the
standard library and `cryptography`): a partner's resource server may copy it as it is
(docs/partners.md, "DPoP (sender-constrained tokens)"). Our own endpoints use the same
checks (identity/oidc/dpop.py adds the server-provided nonces and the replay cache shared
by our workers).

A resource server that receives `Authorization: DPoP <access token>` and a `DPoP` header:

1. asks our introspection endpoint about the token (RFC 7662); a DPoP-bound token's answer
   carries `token_type: "DPoP"` and `cnf: {"jkt": ...}` (RFC 9449 §6.2);
2. calls `verify_request(...)` with the request's method, its URL as its clients reach it,
   both header values and that introspection answer: it raises `DPoPError` (with the
   `error` to answer in `WWW-Authenticate: DPoP error="..."`) or returns the checked proof;
3. remembers the proof's `jti` until it expires (`Proof.replay_key`, `Proof.expires_at`):
   a proof seen twice is a replay (RFC 9449 §11.1). Pass `seen_before`, a function that
   records the key and returns True when it was already recorded (e.g. Redis `SET NX EX`).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

# Asymmetric JWS algorithms accepted for proofs (RFC 9449 §4.3 check 5), in the order
# discovery lists them (`dpop_signing_alg_values_supported`).
ALGORITHMS = ("ES256", "ES384", "PS256", "RS256", "EdDSA")
MAX_PROOF_LENGTH = 8192  # characters of one DPoP header: an RSA-4096 key's proof is ~1.6 kB
MAX_JTI_LENGTH = 256
MIN_RSA_BITS = 2048
# Members that only a private JWK has (RFC 7518 §6.2.2, §6.3.2, §6.4; RFC 8037 §2).
_PRIVATE_MEMBERS = frozenset({"d", "p", "q", "dp", "dq", "qi", "oth", "k"})
_CURVES: dict[str, tuple[str, Any, int]] = {
    "ES256": ("P-256", ec.SECP256R1(), 32),
    "ES384": ("P-384", ec.SECP384R1(), 48),
}
_DEFAULT_PORTS = {"http": 80, "https": 443}


class DPoPError(Exception):
    """A refused proof. `error`: invalid_dpop_proof, use_dpop_nonce or invalid_token."""

    def __init__(self, error: str, description: str) -> None:
        super().__init__(description)
        self.error = error
        self.description = description


@dataclass(frozen=True)
class Proof:
    """A proof whose every check passed (the replay check is the caller's)."""

    jkt: str  # RFC 7638 SHA-256 thumbprint of its public key
    jti: str
    iat: int
    nonce: str | None
    replay_key: str  # what a replay cache keeps: SHA-256 of (jkt, jti)
    expires_at: int  # until when the replay cache must remember it


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    if not text or "=" in text or "+" in text or "/" in text:
        raise ValueError("not base64url")
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _invalid(description: str) -> DPoPError:
    return DPoPError("invalid_dpop_proof", description)


def access_token_hash(access_token: str) -> str:
    """`ath` (RFC 9449 §4.2): base64url of the SHA-256 of the access token's ASCII bytes."""
    return _b64(hashlib.sha256(access_token.encode("ascii", "replace")).digest())


def jwk_thumbprint(key: Mapping[str, Any]) -> str:
    """RFC 7638 SHA-256 thumbprint of a public JWK (EC, RSA or OKP)."""
    kty = key.get("kty")
    if kty == "EC":
        names: tuple[str, ...] = ("crv", "kty", "x", "y")
    elif kty == "RSA":
        names = ("e", "kty", "n")
    elif kty == "OKP":
        names = ("crv", "kty", "x")
    else:
        raise _invalid("Unsupported key type in the jwk header.")
    members = {name: key.get(name) for name in names}
    if not all(isinstance(value, str) and value for value in members.values()):
        raise _invalid("The jwk header lacks a required member.")
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True).encode("utf-8")
    return _b64(hashlib.sha256(canonical).digest())


def _public_key(algorithm: str, key: Mapping[str, Any]) -> Any:
    """The public key of a JWK usable with `algorithm`; DPoPError otherwise."""
    if _PRIVATE_MEMBERS & set(key):
        raise _invalid("The jwk header must hold a public key only.")
    kty = key.get("kty")
    try:
        if algorithm in _CURVES:
            crv, curve, size = _CURVES[algorithm]
            if kty != "EC" or key.get("crv") != crv:
                raise _invalid(f"{algorithm} needs an EC key on {crv}.")
            x, y = _unb64(key["x"]), _unb64(key["y"])
            if len(x) != size or len(y) != size:
                raise _invalid("Malformed EC key.")
            numbers = ec.EllipticCurvePublicNumbers(int.from_bytes(x, "big"), int.from_bytes(y, "big"), curve)
            return numbers.public_key()  # refuses a point off the curve
        if algorithm in ("RS256", "PS256"):
            if kty != "RSA":
                raise _invalid(f"{algorithm} needs an RSA key.")
            n, e = int.from_bytes(_unb64(key["n"]), "big"), int.from_bytes(_unb64(key["e"]), "big")
            if n.bit_length() < MIN_RSA_BITS:
                raise _invalid(f"RSA keys must have at least {MIN_RSA_BITS} bits.")
            return rsa.RSAPublicNumbers(e, n).public_key()
        if algorithm == "EdDSA":
            if kty != "OKP" or key.get("crv") != "Ed25519":
                raise _invalid("EdDSA proofs need an Ed25519 key.")
            return Ed25519PublicKey.from_public_bytes(_unb64(key["x"]))
    except DPoPError:
        raise
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        raise _invalid("Malformed jwk header.") from exc
    raise _invalid("Unsupported algorithm.")


def _signature_valid(algorithm: str, key: Any, signing_input: bytes, signature: bytes) -> bool:
    try:
        if algorithm in _CURVES:
            size = _CURVES[algorithm][2]
            if len(signature) != 2 * size:
                return False
            der = encode_dss_signature(
                int.from_bytes(signature[:size], "big"), int.from_bytes(signature[size:], "big")
            )
            digest = hashes.SHA256() if algorithm == "ES256" else hashes.SHA384()
            key.verify(der, signing_input, ec.ECDSA(digest))
        elif algorithm == "RS256":
            key.verify(signature, signing_input, padding.PKCS1v15(), hashes.SHA256())
        elif algorithm == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            key.verify(signature, signing_input, pss, hashes.SHA256())
        else:
            key.verify(signature, signing_input)
    except (InvalidSignature, ValueError):
        return False
    return True


def normalized_uri(uri: str) -> str | None:
    """scheme://host[:port]/path of an http(s) URI, normalised (RFC 3986 §6.2.2, §6.2.3):
    scheme and host lowercase, default port dropped, empty path as "/"; query and fragment
    ignored (RFC 9449 §4.3 check 9). None when it is not an absolute http(s) URI."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if scheme not in _DEFAULT_PORTS or not host:
        return None
    if ":" in host:
        host = f"[{host}]"
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return f"{scheme}://{netloc}{parts.path or '/'}"


def _signed_claims(value: str | None, algorithms: tuple[str, ...]) -> tuple[str, dict[str, Any]]:
    """(jkt, claims) of a proof whose form, header, key and signature are right (checks 1-7)."""
    if value is None:
        raise _invalid("A DPoP proof is required.")
    if not value or len(value) > MAX_PROOF_LENGTH:
        raise _invalid("The DPoP proof is empty or too long.")
    if "," in value or value.count(".") != 2 or value != value.strip():
        raise _invalid("Send exactly one DPoP header holding one compact JWT.")
    encoded_header, encoded_claims, encoded_signature = value.split(".")
    try:
        header = json.loads(_unb64(encoded_header))
        claims = json.loads(_unb64(encoded_claims))
        signature = _unb64(encoded_signature)
    except (ValueError, binascii.Error, UnicodeDecodeError, RecursionError) as exc:
        raise _invalid("The DPoP proof is not a well-formed JWT.") from exc
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise _invalid("The DPoP proof is not a well-formed JWT.")
    if header.get("typ") != "dpop+jwt":
        raise _invalid("The proof's typ must be dpop+jwt.")
    algorithm = header.get("alg")
    if algorithm not in algorithms:
        raise _invalid(f"Unsupported proof algorithm; use one of: {' '.join(algorithms)}.")
    if "crit" in header:
        raise _invalid("No critical header parameter is understood here.")
    jwk = header.get("jwk")
    if not isinstance(jwk, dict):
        raise _invalid("The proof must carry its public key in the jwk header.")
    key = _public_key(algorithm, jwk)
    jkt = jwk_thumbprint(jwk)
    if not _signature_valid(algorithm, key, f"{encoded_header}.{encoded_claims}".encode("ascii"), signature):
        raise _invalid("The proof's signature does not verify with its jwk.")
    return jkt, claims


def verify_proof(
    value: str | None,
    *,
    method: str,
    url: str,
    access_token: str | None = None,
    max_age: int = 300,
    leeway: int = 60,
    now: float | None = None,
    algorithms: tuple[str, ...] = ALGORITHMS,
    nonce_check: Callable[[str | None], None] | None = None,
) -> Proof:
    """Every check of RFC 9449 §4.3 on one DPoP header value, except the replay cache.

    `value` is the request's DPoP header (None: absent; several headers arrive joined by
    commas and are refused). `url` is the request's URL as the client addressed it.
    `access_token`: at a resource, the token of `Authorization: DPoP` (checks `ath`).
    `nonce_check(nonce)` raises DPoPError("use_dpop_nonce", ...) to ask for a (new) nonce.
    `iat` may be up to `leeway` seconds ahead and `max_age` seconds old.
    """
    jkt, claims = _signed_claims(value, algorithms)
    jti, htm, htu, iat = claims.get("jti"), claims.get("htm"), claims.get("htu"), claims.get("iat")
    if not isinstance(jti, str) or not jti or len(jti) > MAX_JTI_LENGTH:
        raise _invalid("The proof needs a jti (at most 256 characters).")
    if not isinstance(htm, str) or not isinstance(htu, str):
        raise _invalid("The proof needs htm and htu.")
    if isinstance(iat, bool) or not isinstance(iat, int | float) or not math.isfinite(iat):
        raise _invalid("The proof needs a numeric iat.")
    if htm != method:
        raise _invalid("The proof's htm is not this request's method.")
    expected = normalized_uri(url)
    if expected is None or normalized_uri(htu) != expected:
        raise _invalid("The proof's htu is not this endpoint's URL.")
    nonce = claims.get("nonce")
    if nonce is not None and not isinstance(nonce, str):
        raise _invalid("The proof's nonce must be a string.")
    if nonce_check is not None:
        nonce_check(nonce)
    current = time.time() if now is None else now
    if iat > current + leeway:
        raise _invalid("The proof's iat is in the future.")
    if iat < current - max_age:
        raise _invalid("The proof is too old (iat).")
    if access_token is not None:
        ath = claims.get("ath")
        if not isinstance(ath, str) or not hmac.compare_digest(ath, access_token_hash(access_token)):
            raise _invalid("The proof's ath is not the hash of this access token.")
    return Proof(
        jkt=jkt,
        jti=jti,
        iat=int(iat),
        nonce=nonce,
        replay_key=hashlib.sha256(f"{jkt}\x00{jti}".encode()).hexdigest(),
        expires_at=int(max(current, iat)) + max_age + leeway,
    )


def verify_request(
    *,
    method: str,
    url: str,
    authorization: str | None,
    dpop: str | None,
    introspection: Mapping[str, Any],
    seen_before: Callable[[Proof], bool],
    max_age: int = 300,
    leeway: int = 60,
    now: float | None = None,
) -> Proof:
    """A resource server's whole check of `Authorization: DPoP <token>` plus its proof.

    `introspection` is our introspection endpoint's answer for that token. Raises
    DPoPError: invalid_token for an inactive or unbound token, or a token sent with the
    Bearer scheme while bound (RFC 9449 §7.2); invalid_dpop_proof for any failed check,
    another key than the one bound, or a replayed proof.
    """
    scheme, _, token = (authorization or "").partition(" ")
    token = token.strip()
    bound = (introspection.get("cnf") or {}).get("jkt") if introspection.get("active") else None
    if not introspection.get("active"):
        raise DPoPError("invalid_token", "The access token is not active.")
    if scheme.lower() != "dpop" or not token:
        if bound:
            raise DPoPError("invalid_token", "This access token is DPoP-bound: use the DPoP scheme.")
        raise DPoPError("invalid_token", "Use Authorization: DPoP <access token>.")
    if not bound:
        raise DPoPError("invalid_token", "This access token is not DPoP-bound.")
    proof = verify_proof(
        dpop, method=method, url=url, access_token=token, max_age=max_age, leeway=leeway, now=now
    )
    if not hmac.compare_digest(proof.jkt, str(bound)):
        raise _invalid("The proof is signed by another key than the one the token is bound to.")
    if seen_before(proof):
        raise _invalid("This proof was already used (jti).")
    return proof
