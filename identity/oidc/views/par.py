"""Pushed authorization request endpoint (RFC 9126 §2).

The client authenticates exactly as at the token endpoint (its registered method; public
clients send `client_id`), and POSTs the authorization request's parameters. They are
checked now as the authorization endpoint would (client, registered redirect URI, response
type, scopes, PKCE S256, `claims` JSON); errors are answered here in JSON (§2.3). On
success: 201 with `request_uri` and `expires_in` (§2.2).

DPoP (RFC 9449 §10.1): a `DPoP` proof sent with the pushed request is checked as at the
token endpoint (nonce included) and its key's thumbprint becomes the request's `dpop_jkt`;
a `dpop_jkt` parameter naming another key is refused (invalid_dpop_proof). The code issued
for it is then exchanged only with a proof by that key.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.views.mixins import OAuthLibMixin
from oauthlib import oauth2
from oauthlib.common import urlencode

from identity.oidc.claims import parse_claims_request
from identity.oidc.constants import PKCE_METHOD
from identity.oidc.dpop import add_fresh_nonce, token_request_proof
from identity.oidc.errors import json_error
from identity.oidc.par import par_store

# Client authentication parameters: never part of the stored authorization request.
_AUTH_PARAMS = {"client_secret", "client_assertion", "client_assertion_type"}
MAX_PARAMS = 50
MAX_VALUE_LENGTH = 4096


@method_decorator(csrf_exempt, name="dispatch")
class PushedAuthorizationView(OAuthLibMixin, View):
    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        basic = request.headers.get("Authorization", "").startswith("Basic ")
        challenge = {"WWW-Authenticate": 'Basic realm="par"'} if basic else None
        client = self._authenticated_client(request)
        if client is None:
            return json_error("invalid_client", "Client authentication failed.", 401, challenge)
        if request.POST.get("client_id") and request.POST["client_id"] != client.client_id:
            return json_error("invalid_request", "client_id does not match the authenticated client.")
        if len(request.POST) > MAX_PARAMS or any(len(v) > MAX_VALUE_LENGTH for v in request.POST.values()):
            return json_error("invalid_request", "Too many or too long parameters.")
        params = {name: request.POST.get(name, "") for name in request.POST if name not in _AUTH_PARAMS}
        params["client_id"] = client.client_id
        proof, refusal = token_request_proof(request)
        if refusal is not None:
            return refusal
        if proof is not None:
            if params.get("dpop_jkt", proof.jkt) != proof.jkt:
                return json_error("invalid_dpop_proof", "dpop_jkt is not the key of the DPoP proof.")
            params["dpop_jkt"] = proof.jkt
        if "request_uri" in params:
            return json_error("invalid_request", "request_uri cannot be pushed (RFC 9126 §2.1).")
        if "request" in params:
            return json_error("request_not_supported", "Request objects are not supported.")
        if "claims" in params and parse_claims_request(params["claims"]) is None:
            return json_error("invalid_request", "Malformed claims parameter.")
        core = self.get_oauthlib_core()
        uri = reverse("oidc:authorize") + "?" + urlencode(list(params.items()))
        try:
            core.server.validate_authorization_request(
                uri, http_method="GET", body="", headers=core.extract_headers(request)
            )
        except oauth2.OAuth2Error as error:
            # Every error oauthlib raises names itself (only its base class has None).
            return json_error(error.error or "invalid_request", error.description or "")
        if params.get("code_challenge_method") != PKCE_METHOD:
            return json_error("invalid_request", "PKCE with code_challenge_method=S256 is required.")
        request_uri, expires_in = par_store(client=client, parameters=params)
        response = JsonResponse({"request_uri": request_uri, "expires_in": expires_in}, status=201)
        response["Cache-Control"] = "no-store"
        add_fresh_nonce(response, proof)
        return response

    def _authenticated_client(self, request: HttpRequest) -> Any | None:
        core = self.get_oauthlib_core()
        oauth_request = core.oauth_request(request)
        validator = core.server.request_validator
        if validator.client_authentication_required(oauth_request):
            if not validator.authenticate_client(oauth_request):
                return None
        elif not validator.authenticate_client_id(oauth_request.client_id, oauth_request):
            return None
        return oauth_request.client
