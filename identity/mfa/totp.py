"""RFC 6238 time-based one-time passwords: keys, codes, provisioning URI and QR code.

The HOTP computation is django-otp's (`django_otp.oath.hotp`, RFC 4226); this module adds
the window and replay rules of our devices and the enrolment material.
"""

from __future__ import annotations

import base64
import hmac
import secrets
from urllib.parse import quote, urlencode

import segno
from django_otp.oath import hotp

KEY_BYTES = 20  # 160 bits, RFC 4226 §4 recommendation for HMAC-SHA-1
TOLERANCE_STEPS = 1  # the previous and the next time step are accepted (clock drift)


def generate_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def base32(key: bytes) -> str:
    return base64.b32encode(key).decode("ascii").rstrip("=")


def grouped(value: str, size: int = 4) -> str:
    """ "ABCD EFGH …": easier to read aloud and to type into an app by hand."""
    return " ".join(value[i : i + size] for i in range(0, len(value), size))


def time_step(at: float, step: int = 30) -> int:
    return int(at // step)


def code_at_step(key: bytes, counter: int, digits: int = 6) -> str:
    return str(hotp(key, counter, digits=digits)).zfill(digits)


def normalize_code(code: str) -> str:
    return "".join(ch for ch in (code or "") if not ch.isspace() and ch != "-")


def matching_step(
    key: bytes, code: str, *, at: float, step: int = 30, digits: int = 6, tolerance: int = TOLERANCE_STEPS
) -> int | None:
    """The time step within ±`tolerance` of `at` whose code is `code`, else None.

    Every candidate is compared (constant time each) so that timing does not tell which
    step matched.
    """
    code = normalize_code(code)
    if len(code) != digits or not code.isdigit():
        return None
    current = time_step(at, step)
    found = None
    for counter in range(current - tolerance, current + tolerance + 1):
        if hmac.compare_digest(code_at_step(key, counter, digits), code) and found is None:
            found = counter
    return found


def provisioning_uri(key: bytes, *, account: str, issuer: str, digits: int = 6, step: int = 30) -> str:
    """The otpauth:// URI understood by authenticator apps (Google's Key Uri Format)."""
    label = quote(f"{issuer}:{account}", safe="@:")
    params = {"secret": base32(key), "issuer": issuer, "algorithm": "SHA1", "digits": digits, "period": step}
    return f"otpauth://totp/{label}?{urlencode(params, quote_via=quote)}"


def qr_code_data_uri(uri: str) -> str:
    """The provisioning URI as an SVG QR code (a data: URI for an <img>, rendered server-side)."""
    return segno.make(uri, error="m").svg_data_uri(scale=5, border=4, dark="#000", light="#fff")
