"""A local OpenID provider standing in for FranceConnect v2, on a real HTTP port.

It speaks the parts of the protocol our relying party uses, the way FranceConnect v2 does:
discovery, JWKS (an ES256 key, and an RS256 one), authorize (no login page: it sends the
browser straight back with a code for the configured test identity), token
(client_secret_post), userinfo answered as a signed JWT (``application/jwt``), and
end-session. Switches make it misbehave in each way the relying party must refuse.

It checks what a real provider would check (client id, registered redirect URIs, code
single use and binding to the redirect URI, client secret, bearer token), so a test that
passes against it has really spoken the protocol.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from jwcrypto import jwk, jwt

DEFAULT_IDENTITY = {
    "sub": "b6048e95bb134ec5b1d1e1fa69f287172a91722b9354d643a1bcf2ebb0fd2ef5v1",
    "given_name": "Angela Claire Louise",
    "family_name": "DUBOIS",
    "preferred_username": "",
    "birthdate": "1962-08-24",
    "gender": "female",
    "birthplace": "75107",
    "birthcountry": "99100",
    "email": "angela.dubois@example.org",
}


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Switches:
    """How the next answers go wrong (all off = a well-behaved FranceConnect)."""

    # id_token: tamper_signature | tamper_payload | wrong_nonce | non_ascii_nonce | wrong_aud
    # | wrong_iss | expired | hs256 | none | unknown_kid
    id_token: str = ""
    acr: str | None = "eidas1"
    amr: list[str] | None = field(default_factory=lambda: ["pwd"])
    userinfo: str = ""  # unsigned | other_sub | tamper_signature | none | wrong_aud
    authorize_error: str = ""  # e.g. access_denied
    discovery_delay: float = 0.0  # seconds before answering discovery (timeouts)
    alg: str = "ES256"  # or RS256


class FakeFranceConnect:
    def __init__(
        self,
        *,
        client_id: str = "fs-client-id-0123456789",
        client_secret: str = "fs-client-secret-0123456789abcdef0123456789",
        redirect_uris: tuple[str, ...] = (),
        post_logout_redirect_uris: tuple[str, ...] = (),
        identity: dict[str, str] | None = None,
    ) -> None:
        self.client_id = client_id
        self.client_secret = client_secret
        self.redirect_uris = set(redirect_uris)
        self.post_logout_redirect_uris = set(post_logout_redirect_uris)
        self.identity = dict(identity or DEFAULT_IDENTITY)
        self.switches = Switches()
        self.es_key = jwk.JWK.generate(kty="EC", crv="P-256", kid="fc-es256", use="sig", alg="ES256")
        self.rsa_key = jwk.JWK.generate(kty="RSA", size=2048, kid="fc-rs256", use="sig", alg="RS256")
        self.lock = threading.Lock()
        self.codes: dict[str, dict[str, Any]] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        self.authorize_requests: list[dict[str, str]] = []
        self.token_requests: list[dict[str, str]] = []
        self.end_session_requests: list[dict[str, str]] = []
        self.discovery_requests = 0
        self.issued_id_tokens: list[str] = []
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                fake._handle(self, "GET")

            def do_POST(self) -> None:
                fake._handle(self, "POST")

            def log_message(self, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # a client that gave up (timeout tests) is not a server error

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.issuer = f"http://127.0.0.1:{self.port}/api/v2"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.closed = False

    # --- lifecycle --------------------------------------------------------------------------------

    def close(self) -> None:
        """Stop answering: the port is closed, connections are refused."""
        if not self.closed:
            self.closed = True
            self.server.shutdown()
            self.server.server_close()

    # --- token building ---------------------------------------------------------------------------

    def _signing_key(self) -> jwk.JWK:
        return self.rsa_key if self.switches.alg == "RS256" else self.es_key

    def sign(self, claims: dict[str, Any], *, mode: str = "") -> str:
        if mode == "none":
            header = {"alg": "none", "typ": "JWT"}
            return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}."
        if mode == "hs256":
            # The classic confusion: an HMAC keyed with a secret the RP knows (its client secret).
            key = jwk.JWK(kty="oct", k=_b64(self.client_secret.encode()))
            token = jwt.JWT(header={"alg": "HS256", "typ": "JWT"}, claims=claims)
            token.make_signed_token(key)
            return token.serialize()
        key = self._signing_key()
        if mode == "unknown_kid":
            key = jwk.JWK.generate(kty="EC", crv="P-256", kid="not-published")
        alg = "RS256" if key.get("kty") == "RSA" else "ES256"
        token = jwt.JWT(header={"alg": alg, "kid": key.get("kid"), "typ": "JWT"}, claims=claims)
        token.make_signed_token(key)
        raw = token.serialize()
        if mode == "tamper_signature":
            head, payload, signature = raw.split(".")
            sig = bytearray(base64.urlsafe_b64decode(signature + "=" * (-len(signature) % 4)))
            sig[5] ^= 0x01
            raw = f"{head}.{payload}.{_b64(bytes(sig))}"
        if mode == "tamper_payload":
            head, _payload, signature = raw.split(".")
            raw = f"{head}.{_b64(json.dumps({**claims, 'sub': 'someone-else'}).encode())}.{signature}"
        return raw

    def _id_token(self, grant: dict[str, Any], access_token: str) -> str:
        now = int(time.time())
        mode = self.switches.id_token
        claims: dict[str, Any] = {
            "iss": "https://evil.example.org/api/v2" if mode == "wrong_iss" else self.issuer,
            "sub": self.identity["sub"],
            "aud": "someone-else" if mode == "wrong_aud" else self.client_id,
            "exp": now - 3600 if mode == "expired" else now + 60,
            "iat": now - 3660 if mode == "expired" else now,
            "auth_time": now,
            "nonce": {
                "wrong_nonce": "not-the-nonce-you-sent-0000000000000000000",
                "non_ascii_nonce": "nonce-été-" + grant["nonce"],
            }.get(mode, grant["nonce"]),
            "sid": "fc-session-" + secrets.token_hex(8),
        }
        if self.switches.acr is not None:
            claims["acr"] = self.switches.acr
        if self.switches.amr is not None:
            claims["amr"] = self.switches.amr
        signing_mode = (
            mode if mode in {"tamper_signature", "tamper_payload", "hs256", "none", "unknown_kid"} else ""
        )
        raw = self.sign(claims, mode=signing_mode)
        self.issued_id_tokens.append(raw)
        return raw

    def _userinfo(self, grant: dict[str, Any]) -> tuple[str, bytes]:
        mode = self.switches.userinfo
        now = int(time.time())
        scopes = grant["scope"].split()
        claims: dict[str, Any] = {
            "sub": "someone-else" if mode == "other_sub" else self.identity["sub"],
            "iss": self.issuer,
            "aud": "someone-else" if mode == "wrong_aud" else self.client_id,
            "iat": now,
            "exp": now + 60,
        }
        for name, value in self.identity.items():
            if name != "sub" and name in scopes and value:
                claims[name] = value
        if mode == "unsigned":
            return "application/json", json.dumps(claims).encode()
        signing_mode = mode if mode in {"tamper_signature", "none"} else ""
        return "application/jwt", self.sign(claims, mode=signing_mode).encode()

    # --- HTTP -------------------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        return {
            "issuer": self.issuer,
            "authorization_endpoint": f"{self.issuer}/authorize",
            "token_endpoint": f"{self.issuer}/token",
            "userinfo_endpoint": f"{self.issuer}/userinfo",
            "end_session_endpoint": f"{self.issuer}/session/end",
            "jwks_uri": f"{self.issuer}/jwks",
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
            "userinfo_signing_alg_values_supported": ["ES256", "RS256"],
            "token_endpoint_auth_methods_supported": ["client_secret_post"],
            "acr_values_supported": ["eidas1"],
            "claims_parameter_supported": True,
            "scopes_supported": ["openid", *DEFAULT_IDENTITY.keys()],
        }

    def _send(
        self,
        handler: BaseHTTPRequestHandler,
        status: int,
        body: bytes = b"",
        content_type: str = "",
        headers: dict[str, str] | None = None,
    ) -> None:
        handler.send_response(status)
        if content_type:
            handler.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            handler.send_header(name, value)
        handler.send_header("Content-Length", str(len(body)))
        handler.send_header("Cache-Control", "no-store")
        handler.end_headers()
        handler.wfile.write(body)

    def _json(self, handler: BaseHTTPRequestHandler, status: int, data: Any) -> None:
        self._send(handler, status, json.dumps(data).encode(), "application/json; charset=utf-8")

    def _redirect(self, handler: BaseHTTPRequestHandler, base: str, params: dict[str, str]) -> None:
        self._send(handler, 302, headers={"Location": f"{base}?{urlencode(params)}"})

    def _handle(self, handler: BaseHTTPRequestHandler, method: str) -> None:
        parts = urlsplit(handler.path)
        path = parts.path.removeprefix("/api/v2")
        query = {key: values[0] for key, values in parse_qs(parts.query).items()}
        form: dict[str, str] = {}
        if method == "POST":
            length = int(handler.headers.get("Content-Length") or 0)
            form = {key: values[0] for key, values in parse_qs(handler.rfile.read(length).decode()).items()}
        route = (method, path)
        if route == ("GET", "/.well-known/openid-configuration"):
            with self.lock:
                self.discovery_requests += 1
            if self.switches.discovery_delay:
                time.sleep(self.switches.discovery_delay)
            return self._json(handler, 200, self.discovery())
        if route == ("GET", "/jwks"):
            keys = [json.loads(self.es_key.export_public()), json.loads(self.rsa_key.export_public())]
            return self._json(handler, 200, {"keys": keys})
        if route == ("GET", "/authorize"):
            return self._authorize(handler, query)
        if route == ("POST", "/token"):
            return self._token(handler, form)
        if route == ("GET", "/userinfo"):
            return self._userinfo_endpoint(handler)
        if route == ("GET", "/session/end"):
            return self._end_session(handler, query)
        return self._json(handler, 404, {"error": "not_found"})

    def _authorize(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        with self.lock:
            self.authorize_requests.append(query)
        redirect_uri = query.get("redirect_uri", "")
        if query.get("client_id") != self.client_id or redirect_uri not in self.redirect_uris:
            return self._json(
                handler, 400, {"error": "invalid_request", "error_description": "unknown client"}
            )
        state = query.get("state", "")
        missing = [name for name in ("state", "nonce", "scope", "acr_values") if not query.get(name)]
        if query.get("response_type") != "code" or missing or "openid" not in query["scope"].split():
            return self._redirect(handler, redirect_uri, {"error": "invalid_request", "state": state})
        if self.switches.authorize_error:
            return self._redirect(
                handler, redirect_uri, {"error": self.switches.authorize_error, "state": state}
            )
        code = secrets.token_urlsafe(32)
        with self.lock:
            self.codes[code] = {
                "nonce": query["nonce"],
                "redirect_uri": redirect_uri,
                "scope": query["scope"],
                "claims": query.get("claims", ""),
            }
        return self._redirect(handler, redirect_uri, {"code": code, "state": state})

    def _token(self, handler: BaseHTTPRequestHandler, form: dict[str, str]) -> None:
        with self.lock:
            self.token_requests.append(form)
            grant = self.codes.pop(form.get("code", ""), None)
        if form.get("client_id") != self.client_id or form.get("client_secret") != self.client_secret:
            return self._json(handler, 401, {"error": "invalid_client"})
        if form.get("grant_type") != "authorization_code" or grant is None:
            return self._json(handler, 400, {"error": "invalid_grant"})
        if form.get("redirect_uri") != grant["redirect_uri"]:
            return self._json(handler, 400, {"error": "invalid_grant"})
        access_token = secrets.token_urlsafe(32)
        with self.lock:
            self.access_tokens[access_token] = grant
        body = {
            "access_token": access_token,
            "token_type": "Bearer",
            "expires_in": 60,
            "id_token": self._id_token(grant, access_token),
            "scope": grant["scope"],
        }
        return self._json(handler, 200, body)

    def _userinfo_endpoint(self, handler: BaseHTTPRequestHandler) -> None:
        header = handler.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else ""
        with self.lock:
            grant = self.access_tokens.get(token)
        if grant is None:
            return self._send(handler, 401, headers={"WWW-Authenticate": 'Bearer error="invalid_token"'})
        content_type, body = self._userinfo(grant)
        return self._send(handler, 200, body, content_type)

    def _end_session(self, handler: BaseHTTPRequestHandler, query: dict[str, str]) -> None:
        with self.lock:
            self.end_session_requests.append(query)
        target = query.get("post_logout_redirect_uri", "")
        if (
            target not in self.post_logout_redirect_uris
            or query.get("id_token_hint") not in self.issued_id_tokens
        ):
            return self._json(handler, 400, {"error": "invalid_request"})
        return self._redirect(handler, target, {"state": query.get("state", "")})
