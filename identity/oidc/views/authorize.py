"""Authorization endpoint (RFC 6749 §4.1, OpenID Connect Core 1.0 §3.1.2).

Our own view on top of django-oauth-toolkit's oauthlib core, because the library's
does not support POST requests, `prompt=none`, `max_age` or an authentication time,
and would put error redirects together without `iss` (RFC 9207).
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from jwcrypto import jwt
from jwcrypto.common import JWException
from oauth2_provider.exceptions import FatalClientError, OAuthToolkitError
from oauth2_provider.models import get_access_token_model, get_application_model, get_id_token_model
from oauth2_provider.settings import oauth2_settings
from oauth2_provider.views.mixins import OAuthLibMixin

from identity.oidc.constants import PKCE_METHOD
from identity.oidc.errors import SeeOther, error_page, redirect_error
from identity.oidc.subjects import subject_for
from identity.selectors import session_auth_time
from identity.sessions import browser_session_for_request

PENDING_SESSION_KEY = "cum_pending_authorizations"
MAX_PENDING = 5
# Parameters that force a fresh sign-in; dropped from the request we resume after it.
_REAUTH_PARAMS = ("prompt", "max_age")


def _params(request: HttpRequest) -> QueryDict:
    return request.POST if request.method == "POST" else request.GET


class _AuthorizationMixin(OAuthLibMixin):
    def _finish(self, request: HttpRequest, scopes: list[str], credentials: dict[str, Any]) -> HttpResponse:
        credentials = dict(credentials)
        credentials["auth_time"] = session_auth_time(request)
        session = browser_session_for_request(request)
        if session is None:
            # Signed out (or revoked from another device) since the page was shown.
            return error_page(request, "login_required", "Votre session a pris fin. Reconnectez-vous.")
        # The code, then the tokens, carry the browser session (sid in the ID token).
        credentials["cum_sid"] = session.sid
        try:
            uri, _headers, _body, _status = self.create_authorization_response(
                request=request, scopes=" ".join(scopes), credentials=credentials, allow=True
            )
        except OAuthToolkitError as error:
            return self._oauth_error(error, credentials)
        return SeeOther(uri)

    def _oauth_error(
        self, error: OAuthToolkitError, credentials: dict[str, Any] | None = None
    ) -> HttpResponse:
        oauthlib_error = error.oauthlib_error
        redirect_uri = oauthlib_error.redirect_uri or (credentials or {}).get("redirect_uri")
        if isinstance(error, FatalClientError) or not redirect_uri:
            return error_page(self.request, oauthlib_error.error, oauthlib_error.description or "")
        return redirect_error(
            redirect_uri,
            oauthlib_error.error,
            oauthlib_error.description or "",
            state=oauthlib_error.state or (credentials or {}).get("state"),
        )


@method_decorator([csrf_exempt, never_cache], name="dispatch")
class AuthorizeView(_AuthorizationMixin, View):
    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.handle(request)

    def post(self, request: HttpRequest) -> HttpResponse:
        return self.handle(request)

    def handle(self, request: HttpRequest) -> HttpResponse:
        params = _params(request)
        if not params.get("redirect_uri") and params.get("client_id"):
            # OIDC Core §3.1.2.1: redirect_uri is REQUIRED; never guess one.
            return error_page(request, "invalid_request", "redirect_uri manquant.")
        try:
            scopes, credentials = self.validate_authorization_request(request)
        except OAuthToolkitError as error:
            return self._oauth_error(error)

        redirect_uri = credentials["redirect_uri"]
        state = credentials.get("state")

        if params.get("request"):
            return redirect_error(
                redirect_uri, "request_not_supported", "Request objects are not supported.", state
            )
        if params.get("request_uri"):
            return redirect_error(
                redirect_uri, "request_uri_not_supported", "request_uri is not supported.", state
            )
        if params.get("code_challenge_method") != PKCE_METHOD:
            return redirect_error(
                redirect_uri, "invalid_request", "PKCE with code_challenge_method=S256 is required.", state
            )

        # A session ended elsewhere (sign out everywhere) signs this browser out here.
        browser_session_for_request(request)

        prompt = set(params.get("prompt", "").split())
        if "none" in prompt and len(prompt) > 1:
            return redirect_error(redirect_uri, "invalid_request", "prompt=none cannot be combined.", state)

        max_age = params.get("max_age")
        if max_age is not None:
            try:
                max_age_seconds: int | None = int(max_age)
                if max_age_seconds is not None and max_age_seconds < 0:
                    raise ValueError
            except ValueError:
                return redirect_error(
                    redirect_uri, "invalid_request", "max_age must be a non-negative integer.", state
                )
        else:
            max_age_seconds = None

        if self._needs_login(request, prompt, max_age_seconds):
            if "none" in prompt:
                return redirect_error(redirect_uri, "login_required", "The resident is not signed in.", state)
            return self._to_login(request, params)

        if "none" in prompt and params.get("id_token_hint"):
            # OIDC Core §3.1.2.1: a silent positive answer only for the End-User the hint
            # names; a hint we did not issue (or cannot verify) gets no silent answer either.
            matches = self._id_token_hint_matches(params["id_token_hint"], request.user, credentials)
            if matches is None:
                return redirect_error(
                    redirect_uri, "invalid_request", "id_token_hint is not an ID token we issued.", state
                )
            if not matches:
                return redirect_error(redirect_uri, "login_required", "Another resident is signed in.", state)

        client = get_application_model().objects.get(client_id=credentials["client_id"])
        if "consent" not in prompt and self._consent_known(request, client, scopes):
            return self._finish(request, scopes, credentials)
        if "none" in prompt:
            return redirect_error(
                redirect_uri, "consent_required", "The resident has not approved this client.", state
            )
        return self._ask_consent(request, client, scopes, credentials)

    def _id_token_hint_matches(self, hint: str, user: Any, credentials: dict[str, Any]) -> bool | None:
        """Whether an ID token we signed (expired ones accepted) names `user`; None if not ours."""
        validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
        key = validator._get_key_for_token(hint)
        if key is None:
            return None
        try:
            claims = json.loads(jwt.JWT(key=key, jwt=hint, check_claims={}).claims)
        except (JWException, ValueError, TypeError):
            return None
        if not isinstance(claims, dict) or claims.get("iss") != settings.ISSUER:
            return None
        issued_to = (
            get_id_token_model()
            .objects.filter(jti=claims.get("jti"))
            .values_list("user_id", flat=True)
            .first()
        )
        if issued_to is not None:
            return issued_to == user.pk
        # The row is gone (logout, expiry clean-up): compare the subject, as the client
        # the hint was issued to knows this resident (pairwise per sector, or public).
        audience = claims.get("aud")
        audiences = audience if isinstance(audience, list) else [audience]
        client_id = credentials.get("client_id")
        hint_client_id = client_id if client_id in audiences else (claims.get("azp") or audiences[0])
        client = get_application_model().objects.filter(client_id=hint_client_id).first()
        if client is None:
            return None
        return claims.get("sub") == subject_for(client, user)

    def _needs_login(self, request: HttpRequest, prompt: set[str], max_age: int | None) -> bool:
        user = request.user
        if not user.is_authenticated:
            return True
        if "login" in prompt:
            return True
        if max_age is not None:
            auth_time = session_auth_time(request)
            if auth_time is None or time.time() - auth_time.timestamp() > max_age:
                return True
        return False

    def _to_login(self, request: HttpRequest, params: QueryDict) -> HttpResponse:
        resumed = params.copy()
        for name in _REAUTH_PARAMS:
            if name == "prompt":
                remaining = [value for value in resumed.get("prompt", "").split() if value != "login"]
                if remaining:
                    resumed["prompt"] = " ".join(remaining)
                else:
                    resumed.pop("prompt", None)
            else:
                resumed.pop(name, None)
        next_url = reverse("oidc:authorize") + "?" + resumed.urlencode()
        login_url = reverse(settings.LOGIN_URL)
        extra = {}
        if params.get("login_hint"):
            extra["login_hint"] = params["login_hint"]
        response = redirect_to_login(next_url, login_url)
        if extra:
            response["Location"] += "&" + urlencode(extra)
        return response

    def _consent_known(self, request: HttpRequest, client: Any, scopes: list[str]) -> bool:
        if client.skip_authorization or client.is_internal:
            return True
        # Until the consent ledger arrives, a live token for the same scopes stands for
        # an earlier approval (django-oauth-toolkit's "auto" approval).
        from django.utils import timezone

        tokens = get_access_token_model().objects.filter(
            user=request.user, application=client, expires__gt=timezone.now()
        )
        return any(token.allow_scopes(scopes) for token in tokens)

    def _ask_consent(
        self, request: HttpRequest, client: Any, scopes: list[str], credentials: dict[str, Any]
    ) -> HttpResponse:
        pending = request.session.get(PENDING_SESSION_KEY, {})
        if len(pending) >= MAX_PENDING:
            oldest = sorted(pending.items(), key=lambda item: item[1]["created"])[
                : len(pending) - MAX_PENDING + 1
            ]
            for key, _value in oldest:
                pending.pop(key, None)
        pending_id = secrets.token_urlsafe(16)
        safe_credentials = {
            key: value
            for key, value in credentials.items()
            if key
            in {
                "client_id",
                "redirect_uri",
                "response_type",
                "state",
                "nonce",
                "code_challenge",
                "code_challenge_method",
                "claims",
            }
        }
        pending[pending_id] = {
            "created": int(time.time()),
            "user": str(request.user.pk),
            "scopes": scopes,
            "credentials": safe_credentials,
        }
        request.session[PENDING_SESSION_KEY] = pending
        from identity.oidc.consent import describe_scopes

        return render(
            request,
            "oidc/consent.html",
            {"client": client, "scopes": describe_scopes(scopes), "pending_id": pending_id},
        )


@method_decorator(never_cache, name="dispatch")
class AuthorizeDecisionView(_AuthorizationMixin, View):
    """The resident's answer on the consent page (CSRF-protected)."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        pending = request.session.get(PENDING_SESSION_KEY, {})
        item = pending.pop(request.POST.get("pending", ""), None)
        request.session[PENDING_SESSION_KEY] = pending
        if item is None or not request.user.is_authenticated or item["user"] != str(request.user.pk):
            return error_page(
                request,
                "invalid_request",
                "Cette demande d'autorisation a expiré. Retournez sur le service et recommencez.",
            )
        if time.time() - item["created"] > 30 * 60:
            return error_page(request, "invalid_request", "Cette demande d'autorisation a expiré.")
        credentials = item["credentials"]
        if request.POST.get("decision") != "allow":
            return redirect_error(
                credentials["redirect_uri"],
                "access_denied",
                "The resident refused.",
                credentials.get("state"),
            )
        return self._finish(request, item["scopes"], credentials)
