"""WebAuthn (passkeys) on py_webauthn: options for the browser, verification of its answers.

The relying party is this service as named by settings.ISSUER: the RP ID is the issuer's
host and the only accepted origin is the issuer's scheme://host[:port]. Browsers refuse an
IP address as RP ID, so passkeys need a host name (`localhost` works for local runs).

Challenges are random (64 bytes), kept in the Django session for `CHALLENGE_SECONDS`,
bound to one purpose, and spent by their first use, successful or not.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest

from identity.mfa import clock

# py_webauthn (with cbor2, pyOpenSSL and pyasn1 behind it) is imported by the functions
# below, not here: a web worker that never handles a passkey does not hold it (~5 MiB;
# bench/README.md, "Worker memory"). Once one passkey request has loaded it, it stays.
if TYPE_CHECKING:
    from webauthn.helpers.cose import COSEAlgorithmIdentifier
    from webauthn.helpers.structs import PublicKeyCredentialDescriptor
    from webauthn.registration.verify_registration_response import VerifiedRegistration

CHALLENGE_SECONDS = 5 * 60
TIMEOUT_MS = 120_000
SESSION_CHALLENGES = "mfa.webauthn_challenges"


def supported_algs() -> list[COSEAlgorithmIdentifier]:
    from webauthn.helpers.cose import COSEAlgorithmIdentifier  # noqa: PLC0415 - see above

    return [
        COSEAlgorithmIdentifier.ECDSA_SHA_256,
        COSEAlgorithmIdentifier.EDDSA,
        COSEAlgorithmIdentifier.RSASSA_PKCS1_v1_5_SHA_256,
    ]


def known_transports() -> set[str]:
    from webauthn.helpers.structs import AuthenticatorTransport  # noqa: PLC0415 - see above

    return {transport.value for transport in AuthenticatorTransport}


class PasskeyError(ValueError):
    """The browser's answer was not acceptable (never shown verbatim to the resident)."""


def rp_id() -> str:
    return urlsplit(settings.ISSUER).hostname or ""


def expected_origin() -> str:
    parts = urlsplit(settings.ISSUER)
    return f"{parts.scheme}://{parts.netloc}"


def rp_name() -> str:
    return "Compte unique métropolitain"


# --- challenges in the session ------------------------------------------------------------


def challenge_store(request: HttpRequest, purpose: str, challenge: bytes) -> None:
    from webauthn.helpers import bytes_to_base64url  # noqa: PLC0415 - py_webauthn on first use

    challenges = dict(request.session.get(SESSION_CHALLENGES) or {})
    challenges[purpose] = {"value": bytes_to_base64url(challenge), "expires": clock.now() + CHALLENGE_SECONDS}
    request.session[SESSION_CHALLENGES] = challenges


def challenge_pop(request: HttpRequest, purpose: str) -> bytes | None:
    from webauthn.helpers import base64url_to_bytes  # noqa: PLC0415 - py_webauthn on first use

    challenges = dict(request.session.get(SESSION_CHALLENGES) or {})
    entry = challenges.pop(purpose, None)
    request.session[SESSION_CHALLENGES] = challenges
    if not isinstance(entry, dict) or float(entry.get("expires", 0)) < clock.now():
        return None
    try:
        return base64url_to_bytes(str(entry["value"]))
    except (KeyError, ValueError):
        return None


# --- options ------------------------------------------------------------------------------


def _descriptor(credential_id: str, transports: list[str]) -> PublicKeyCredentialDescriptor:
    from webauthn.helpers import base64url_to_bytes  # noqa: PLC0415 - py_webauthn on first use
    from webauthn.helpers.structs import (  # noqa: PLC0415 - py_webauthn on first use
        AuthenticatorTransport,
        PublicKeyCredentialDescriptor,
    )

    known = known_transports()
    return PublicKeyCredentialDescriptor(
        id=base64url_to_bytes(credential_id),
        transports=[AuthenticatorTransport(t) for t in transports if t in known] or None,
    )


def registration_options(
    *, user_handle: bytes, user_name: str, display_name: str, exclude: list[tuple[str, list[str]]]
) -> tuple[dict[str, Any], bytes]:
    """Options for navigator.credentials.create(): a discoverable credential if the
    authenticator can (residentKey preferred), user verification preferred."""
    from webauthn import generate_registration_options, options_to_json  # noqa: PLC0415 - on first use
    from webauthn.helpers.structs import (  # noqa: PLC0415 - py_webauthn on first use
        AuthenticatorSelectionCriteria,
        ResidentKeyRequirement,
        UserVerificationRequirement,
    )

    options = generate_registration_options(
        rp_id=rp_id(),
        rp_name=rp_name(),
        user_id=user_handle,
        user_name=user_name,
        user_display_name=display_name or user_name,
        timeout=TIMEOUT_MS,
        authenticator_selection=AuthenticatorSelectionCriteria(
            resident_key=ResidentKeyRequirement.PREFERRED,
            user_verification=UserVerificationRequirement.PREFERRED,
        ),
        exclude_credentials=[_descriptor(cid, transports) for cid, transports in exclude],
        supported_pub_key_algs=supported_algs(),
    )
    return json.loads(options_to_json(options)), options.challenge


def authentication_options(*, allow: list[tuple[str, list[str]]] | None) -> tuple[dict[str, Any], bytes]:
    """Options for navigator.credentials.get(). `allow=None`: any discoverable credential
    for this RP (passwordless sign-in); otherwise only the resident's own credentials."""
    from webauthn import generate_authentication_options, options_to_json  # noqa: PLC0415 - on first use
    from webauthn.helpers.structs import UserVerificationRequirement  # noqa: PLC0415 - on first use

    options = generate_authentication_options(
        rp_id=rp_id(),
        timeout=TIMEOUT_MS,
        allow_credentials=[_descriptor(cid, transports) for cid, transports in allow or []],
        user_verification=UserVerificationRequirement.PREFERRED,
    )
    return json.loads(options_to_json(options)), options.challenge


# --- verification -------------------------------------------------------------------------


def credential_id_of(credential: Any) -> str:
    """The base64url credential id a browser's answer claims (checked later by verification)."""
    from webauthn.helpers import base64url_to_bytes, bytes_to_base64url  # noqa: PLC0415 - on first use

    if not isinstance(credential, dict):
        raise PasskeyError("credential must be an object")
    raw = credential.get("rawId") or credential.get("id")
    if not isinstance(raw, str) or not raw or len(raw) > 1400:
        raise PasskeyError("missing credential id")
    try:
        return bytes_to_base64url(base64url_to_bytes(raw))
    except ValueError as exc:
        raise PasskeyError("malformed credential id") from exc


def user_handle_of(credential: dict[str, Any]) -> str:
    response = credential.get("response")
    handle = response.get("userHandle") if isinstance(response, dict) else None
    return handle if isinstance(handle, str) else ""


def transports_of(credential: dict[str, Any]) -> list[str]:
    response = credential.get("response")
    transports = response.get("transports") if isinstance(response, dict) else None
    if not isinstance(transports, list):
        return []
    known = known_transports()
    return [t for t in transports if isinstance(t, str) and t in known][:10]


def verify_registration(*, credential: Any, challenge: bytes) -> VerifiedRegistration:
    from webauthn import verify_registration_response  # noqa: PLC0415 - py_webauthn on first use
    from webauthn.helpers.exceptions import WebAuthnException  # noqa: PLC0415 - on first use

    if not isinstance(credential, dict):
        raise PasskeyError("credential must be an object")
    try:
        return verify_registration_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=expected_origin(),
            require_user_verification=False,
            supported_pub_key_algs=supported_algs(),
        )
    except (WebAuthnException, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PasskeyError(str(exc)) from exc


def verify_assertion(
    *, credential: Any, challenge: bytes, public_key: bytes, sign_count: int
) -> tuple[int, bool, bool]:
    """Checks the signature, origin, RP ID, challenge, user presence and the signature
    counter (it must increase when either side is non-zero: a clone gives itself away).
    Returns (new sign count, user verified, backed up)."""
    from webauthn import verify_authentication_response  # noqa: PLC0415 - py_webauthn on first use
    from webauthn.helpers.exceptions import WebAuthnException  # noqa: PLC0415 - on first use

    if not isinstance(credential, dict):
        raise PasskeyError("credential must be an object")
    try:
        verified = verify_authentication_response(
            credential=credential,
            expected_challenge=challenge,
            expected_rp_id=rp_id(),
            expected_origin=expected_origin(),
            credential_public_key=public_key,
            credential_current_sign_count=sign_count,
            require_user_verification=False,
        )
    except (WebAuthnException, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise PasskeyError(str(exc)) from exc
    return verified.new_sign_count, verified.user_verified, verified.credential_backed_up
