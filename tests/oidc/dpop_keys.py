"""A DPoP client's side for the tests: keys and proofs made here, independently of
identity/oidc/dpop*.py (signatures with `cryptography`, thumbprints with jwcrypto)."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from typing import Any

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from jwcrypto import jwk


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def ath(token: str) -> str:
    return b64(hashlib.sha256(token.encode("ascii")).digest())


class DPoPKey:
    def __init__(self, alg: str = "ES256", *, rsa_bits: int = 2048) -> None:
        self.alg = alg
        if alg in ("ES256", "ES384"):
            curve = ec.SECP256R1() if alg == "ES256" else ec.SECP384R1()
            self.private: Any = ec.generate_private_key(curve)
        elif alg in ("RS256", "PS256"):
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=rsa_bits)
        else:
            self.private = ed25519.Ed25519PrivateKey.generate()
        key = jwk.JWK.from_pyca(self.private.public_key())
        self.jwk = json.loads(key.export_public())
        self.jwk.pop("kid", None)
        # RFC 7638 thumbprint, computed by jwcrypto.
        self.jkt = key.thumbprint()

    @classmethod
    def from_private_jwk(cls, private: dict[str, Any]) -> DPoPKey:
        """The key of another client (e.g. a library's, exported as a JWK), to make proofs with it."""
        members = {name: private[name] for name in ("kty", "crv", "x", "y", "d") if name in private}
        key = jwk.JWK(**members)
        self = cls.__new__(cls)
        self.alg = "ES256"
        self.private = key.get_op_key("sign")
        public = json.loads(key.export_public())
        public.pop("kid", None)
        self.jwk = public
        self.jkt = key.thumbprint()
        return self

    def private_jwk(self) -> dict[str, Any]:
        return json.loads(jwk.JWK.from_pyca(self.private).export_private())

    def sign(self, signing_input: bytes) -> bytes:
        if self.alg in ("ES256", "ES384"):
            digest = hashes.SHA256() if self.alg == "ES256" else hashes.SHA384()
            size = 32 if self.alg == "ES256" else 48
            r, s = decode_dss_signature(self.private.sign(signing_input, ec.ECDSA(digest)))
            return r.to_bytes(size, "big") + s.to_bytes(size, "big")
        if self.alg == "RS256":
            return self.private.sign(signing_input, padding.PKCS1v15(), hashes.SHA256())
        if self.alg == "PS256":
            pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32)
            return self.private.sign(signing_input, pss, hashes.SHA256())
        return self.private.sign(signing_input)

    def proof(
        self,
        method: str,
        url: str,
        *,
        nonce: str | None = None,
        token: str | None = None,
        iat: float | None = None,
        header: dict[str, Any] | None = None,
        claims: dict[str, Any] | None = None,
        drop: tuple[str, ...] = (),
        signer: DPoPKey | None = None,
    ) -> str:
        head: dict[str, Any] = {"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk}
        body: dict[str, Any] = {
            "jti": secrets.token_urlsafe(16),
            "htm": method,
            "htu": url,
            "iat": int(time.time() if iat is None else iat),
        }
        if nonce is not None:
            body["nonce"] = nonce
        if token is not None:
            body["ath"] = ath(token)
        head.update(header or {})
        body.update(claims or {})
        for name in drop:
            head.pop(name, None)
            body.pop(name, None)
        signing_input = f"{b64(json.dumps(head).encode())}.{b64(json.dumps(body).encode())}"
        signature = (signer or self).sign(signing_input.encode("ascii"))
        return f"{signing_input}.{b64(signature)}"
