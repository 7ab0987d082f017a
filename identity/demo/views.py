"""A tiny relying party living beside the provider, so a newcomer sees the whole flow.

It speaks to the provider over real HTTP like any partner would (discovery, token,
JWKS, userinfo) and verifies the ID token itself. Its portal page (/demo/portail/) plays the
territorial portal: with the access token kept in the demo's session it calls the
personalisation endpoint (GET /profiles/api/v1/personalisation) on every visit, so what the
resident withdraws is gone at the next load (identity.demo.portal builds the page's content).
Enabled only when DEMO_ENABLED.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.views.decorators.cache import never_cache
from jwcrypto import jwk, jwt
from jwcrypto.common import JWException

from identity.demo import DEMO_SCOPES, demo_client_file
from identity.demo.portal import portal_view

SESSION_KEY = "demo.rp"
# The demo partner keeps the resident's access token in its own session, as a portal's
# back-end would, to call the personalisation endpoint on each visit of /demo/portail/.
TOKEN_KEY = "demo.access_token"
PERSONALISATION_PATH = "/profiles/api/v1/personalisation"
ACCOUNT_PERSONALISATION_PATH = "/compte/personnalisation/"


class DemoError(Exception):
    pass


def _provider() -> str:
    return settings.ISSUER


def _client() -> dict[str, str]:
    path = demo_client_file()
    if not path.exists():
        raise DemoError(
            "Le client de démonstration n'est pas installé : lancez `python manage.py load_demo`."
        )
    return json.loads(path.read_text())


def _http_json(url: str, data: dict[str, str] | None = None, headers: dict[str, str] | None = None) -> Any:
    body = urllib.parse.urlencode(data).encode() if data is not None else None
    req = urllib.request.Request(url, data=body, headers=headers or {})  # noqa: S310 - our own issuer
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            detail = json.loads(exc.read())
        except ValueError:
            detail = {"status": exc.code}
        raise DemoError(f"{url} answered {exc.code}: {detail}") from exc
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        raise DemoError(f"{url} unreachable: {exc}") from exc


def _discovery() -> dict[str, Any]:
    return _http_json(_provider() + "/.well-known/openid-configuration")


@never_cache
def index(request: HttpRequest) -> HttpResponse:
    return render(request, "demo/index.html", {"result": request.session.pop("demo.result", None)})


@never_cache
def start(request: HttpRequest) -> HttpResponse:
    try:
        client = _client()
        meta = _discovery()
    except DemoError as exc:
        return render(request, "demo/index.html", {"error": str(exc)}, status=503)
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    state, nonce = secrets.token_urlsafe(16), secrets.token_urlsafe(16)
    request.session[SESSION_KEY] = {"state": state, "nonce": nonce, "verifier": verifier}
    params = {
        "response_type": "code",
        "client_id": client["client_id"],
        "redirect_uri": _provider() + "/demo/callback",
        # ?library=1: the library portal's case (the demo library connector, load_demo_library);
        # ?transport=1: a partner offering subscribers' rates (load_demo_transport);
        # ?ticketing=1: a ticketing platform applying reduced prices (load_demo_ticketing).
        "scope": " ".join(
            [
                *DEMO_SCOPES,
                *(["library_card"] if request.GET.get("library") else []),
                *(["transport_subscription"] if request.GET.get("transport") else []),
                *(["eligibility"] if request.GET.get("ticketing") else []),
            ]
        ),
        "state": state,
        "nonce": nonce,
        "code_challenge": challenge,
        "code_challenge_method": "S256",
    }
    return redirect(meta["authorization_endpoint"] + "?" + urllib.parse.urlencode(params))


@never_cache
def callback(request: HttpRequest) -> HttpResponse:
    pending = request.session.pop(SESSION_KEY, None)
    try:
        if pending is None or request.GET.get("state") != pending["state"]:
            raise DemoError("Paramètre state absent ou différent : la réponse est refusée.")
        if request.GET.get("error"):
            raise DemoError(f"Le fournisseur a répondu : {request.GET['error']}")
        if request.GET.get("iss") != _provider():
            raise DemoError("Paramètre iss absent ou inattendu (RFC 9207).")
        client = _client()
        meta = _discovery()
        basic = base64.b64encode(
            f"{urllib.parse.quote_plus(client['client_id'])}:{urllib.parse.quote_plus(client['client_secret'])}".encode()
        ).decode()
        tokens = _http_json(
            meta["token_endpoint"],
            {
                "grant_type": "authorization_code",
                "code": request.GET.get("code", ""),
                "redirect_uri": _provider() + "/demo/callback",
                "code_verifier": pending["verifier"],
            },
            {"Authorization": f"Basic {basic}"},
        )
        keys = jwk.JWKSet.from_json(json.dumps(_http_json(meta["jwks_uri"])))
        try:
            id_token = jwt.JWT(
                jwt=tokens["id_token"],
                key=keys,
                algs=["RS256", "ES256"],
                check_claims={"iss": meta["issuer"], "aud": client["client_id"], "exp": None},
            )
        except (JWException, ValueError, KeyError) as exc:
            raise DemoError(f"ID token refusé : {exc}") from exc
        claims = json.loads(id_token.claims)
        if claims.get("nonce") != pending["nonce"]:
            raise DemoError("nonce différent : ID token refusé.")
        userinfo = _http_json(
            meta["userinfo_endpoint"], headers={"Authorization": f"Bearer {tokens['access_token']}"}
        )
    except DemoError as exc:
        return render(request, "demo/index.html", {"error": str(exc)}, status=400)
    request.session[TOKEN_KEY] = tokens["access_token"]
    request.session["demo.result"] = {
        "id_token_claims": json.dumps(claims, indent=2, ensure_ascii=False),
        "userinfo": json.dumps(userinfo, indent=2, ensure_ascii=False),
        "verified_at": int(time.time()),
        "sub": claims.get("sub"),
    }
    return redirect("demo:index")


def _personalisation(access_token: str) -> tuple[int, Any]:
    """GET the personalisation endpoint with the resident's token, as a portal's back-end would:
    (status, JSON body or None)."""
    language = "en" if (translation.get_language() or "fr").startswith("en") else "fr"
    req = urllib.request.Request(  # noqa: S310 - our own issuer
        _provider() + PERSONALISATION_PATH,
        headers={
            "Authorization": f"Bearer {access_token}",
            "Accept": "application/json",
            "Accept-Language": language,
        },
    )
    try:
        with urllib.request.urlopen(req, timeout=10) as response:  # noqa: S310
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = None
        return exc.code, body
    except (urllib.error.URLError, TimeoutError, ValueError) as exc:
        raise DemoError(f"{PERSONALISATION_PATH} unreachable: {exc}") from exc


@never_cache
def portal(request: HttpRequest) -> HttpResponse:
    """The territorial portal played by the demo partner: what the resident allows it to use."""
    context: dict[str, Any] = {"account_personalisation_url": ACCOUNT_PERSONALISATION_PATH}
    access_token = request.session.get(TOKEN_KEY)
    if not access_token:
        return render(request, "demo/portal.html", {**context, "signed_out": True})
    try:
        status, body = _personalisation(access_token)
    except DemoError as exc:
        return render(request, "demo/portal.html", {**context, "error": str(exc)}, status=502)
    if status == 401:
        # Expired, or revoked when the resident withdrew this service's access.
        request.session.pop(TOKEN_KEY, None)
        return render(request, "demo/portal.html", {**context, "token_refused": True})
    if status != 200 or not isinstance(body, dict):
        detail = body.get("detail") if isinstance(body, dict) else None
        error = f"{PERSONALISATION_PATH} answered {status}" + (f": {detail}" if detail else "")
        return render(request, "demo/portal.html", {**context, "error": error}, status=502)
    english = (translation.get_language() or "fr").startswith("en")
    return render(
        request,
        "demo/portal.html",
        {
            **context,
            "portal": portal_view(body, english=english),
            "purposes": body.get("purposes") or {},
            "raw": json.dumps(body, indent=2, ensure_ascii=False),
        },
    )
