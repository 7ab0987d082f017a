"""Authorization endpoint (RFC 6749 §4.1, OpenID Connect Core 1.0 §3.1.2).

Our own view on top of django-oauth-toolkit's oauthlib core, because the library's
does not support POST requests, `prompt=none`, `max_age` or an authentication time,
and would put error redirects together without `iss` (RFC 9207).

In order, for a request whose client and redirect URI are valid:
1. the parameters: the request's own, or those pushed earlier (RFC 9126 PAR, `request_uri`
   `urn:ietf:params:oauth:request_uri:…`, required for clients flagged `require_par`);
   `request` objects and other `request_uri`s are refused; `claims` must be valid JSON;
2. sign-in (`prompt`, `max_age`, `id_token_hint`);
3. the authentication level (issue 5): MFA is required when the client is registered
   with `require_mfa` or the `claims` parameter asks for an essential `acr` of
   https://refeds.org/profile/mfa, and wanted when `acr_values` prefers it. A resident below
   it is sent to the second-factor step-up and comes back here. A required level that
   cannot be reached (no second factor, or `prompt=none`) is an error for the client —
   `unmet_authentication_requirements` (OpenID Connect Unmet Authentication Requirements
   1.0) or `interaction_required` — never a code. A wanted (voluntary) level that cannot
   be reached is not an error: the ID token says the level reached (OIDC Core §5.5.1.1);
4. consent, from the ledger (identity/oidc/sharing.py); internal services ask none, and
   show an information page instead the first time (identity/oidc/internal_notice.py).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import dataclass, field
from functools import partial
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib.auth.views import redirect_to_login
from django.db import transaction
from django.http import HttpRequest, HttpResponse, QueryDict
from django.shortcuts import render
from django.urls import reverse
from django.utils import translation
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from jwcrypto import jwt
from jwcrypto.common import JWException
from oauth2_provider.exceptions import FatalClientError, OAuthToolkitError
from oauth2_provider.models import get_application_model, get_id_token_model
from oauth2_provider.settings import oauth2_settings
from oauthlib import oauth2

from consent.services import LedgerTampered, ledger_tampered_audit
from identity.client_cache import client_by_client_id
from identity.levels import ACR_MFA, ACR_RANK
from identity.mfa.selectors import session_acr, step_up_url, user_has_mfa
from identity.oidc.authorization_request import PENDING_CREDENTIALS, AuthorizationMixin
from identity.oidc.claims import parse_claims_request
from identity.oidc.code_issuance import direct_issuance
from identity.oidc.constants import PKCE_METHOD
from identity.oidc.errors import SeeOther, error_page, redirect_error
from identity.oidc.internal_notice import internal_notice_page
from identity.oidc.par import RequestUriError, is_par_urn, par_keep_for_resume, par_resolve
from identity.oidc.sharing import (
    consent_decision_record,
    describe_scopes,
    sharing_granted,
    sharing_purpose_code,
)
from identity.oidc.subjects import subject_for
from identity.request_user import request_user
from identity.selectors import session_auth_time
from identity.sessions import browser_session_for_request

PENDING_SESSION_KEY = "oidc.pending_authorizations"
MAX_PENDING = 5
# When this browser was sent to sign in for a request (by a fingerprint of the request): a
# request with prompt=login or max_age resumes only after a sign-in at or after that moment.
SIGN_IN_ASKED_SESSION_KEY = "oidc.sign_in_asked"
SIGN_IN_ASKED_SECONDS = 30 * 60


def _sign_in_asked(request: HttpRequest, key: str) -> None:
    """Record (once: the first time counts) when this browser was sent to sign in for a request."""
    now = int(time.time())
    asked = {
        name: at
        for name, at in dict(request.session.get(SIGN_IN_ASKED_SESSION_KEY) or {}).items()
        if isinstance(at, int) and now - at < SIGN_IN_ASKED_SECONDS
    }
    if key not in asked and len(asked) >= MAX_PENDING:
        for old in sorted(asked, key=asked.__getitem__)[: len(asked) - MAX_PENDING + 1]:
            asked.pop(old)
    asked.setdefault(key, now)
    request.session[SIGN_IN_ASKED_SESSION_KEY] = asked


def _sign_in_asked_at(request: HttpRequest, key: str) -> int | None:
    at = (request.session.get(SIGN_IN_ASKED_SESSION_KEY) or {}).get(key)
    if not isinstance(at, int) or time.time() - at >= SIGN_IN_ASKED_SECONDS:
        return None
    return at


def _params(request: HttpRequest) -> QueryDict:
    return request.POST if request.method == "POST" else request.GET


def level_requirements(
    client: Any, params: QueryDict, claims: dict[str, Any] | None
) -> tuple[list[str], bool]:
    """(acceptable acr values, essential?) for this request; ([], False) when anything goes.

    Essential: the client requires MFA, or `claims.id_token.acr` is essential (its `value`
    or `values` are then the acceptable levels). Voluntary: the first value of `acr_values`
    we know, when it is MFA.
    """
    if client.require_mfa:
        return [ACR_MFA], True
    spec = ((claims or {}).get("id_token") or {}).get("acr")
    if isinstance(spec, dict) and spec.get("essential") is True:
        listed = spec.get("values")
        values = listed if isinstance(listed, list) else []
        if isinstance(spec.get("value"), str):
            values = [spec["value"]]
        values = [value for value in values if isinstance(value, str)]
        if values:
            return values, True
    preferred = [value for value in params.get("acr_values", "").split() if value in ACR_RANK]
    if preferred and preferred[0] == ACR_MFA:
        return [ACR_MFA], False
    return [], False


def ui_language(ui_locales: str) -> str:
    """The first of our languages named in a space-separated list of BCP 47 tags."""
    available = {code for code, _name in settings.LANGUAGES}
    for tag in ui_locales.split()[:10]:
        primary = tag.split("-")[0].lower()
        if primary in available:
            return primary
    return ""


def _browser_to_link(value: str | None, prompt: set[str]) -> str | None:
    """`consent_browser_id`: which browser the partner's consent widget would like to attach.

    Not a proof of anything (anyone can put any id in a URL): it only names the browser a
    link ticket will be bound to, once the request succeeds (`with_link_ticket`). Never on
    `prompt=none`: a silent request must not start anything for a browser. The id travels
    with the request itself (its parameters, the pushed request, the pending consent), never
    in the session, so it ends with the request whatever the outcome.
    """
    if not value or not isinstance(value, str) or "none" in prompt:
        return None
    return value if len(value) <= 128 else None


@dataclass
class _Authorization:
    """One authorization request as its steps learn it (`AuthorizeView._handle`)."""

    params: QueryDict
    claims: dict[str, Any] | None  # the `claims` parameter, parsed
    scopes: list[str]
    credentials: dict[str, Any]  # oauthlib's; the steps add to it
    client: Any = None  # set once the parameters are checked
    prompt: set[str] = field(default_factory=set)

    def error(self, error: str, description: str) -> HttpResponse:
        """The error sent back to the client's (validated) redirect URI, with its state."""
        return redirect_error(
            self.credentials["redirect_uri"], error, description, self.credentials.get("state")
        )


def _unsupported_parameter(params: QueryDict, malformed_claims: bool) -> tuple[str, str] | None:
    """(error, description) for parameters we refuse once the redirect URI is known valid."""
    if malformed_claims:
        return "invalid_request", "Malformed claims parameter."
    if params.get("request"):
        return "request_not_supported", "Request objects are not supported."
    if params.get("request_uri"):
        # Only our own pushed-request URNs are request_uri values we accept.
        return "request_uri_not_supported", "request_uri is not supported."
    return None


def _max_age(value: str | None) -> int | None:
    """The `max_age` parameter in seconds; ValueError unless a non-negative integer."""
    if value is None:
        return None
    seconds = int(value)
    if seconds < 0:
        raise ValueError
    return seconds


class AuthorizeView(AuthorizationMixin, View):
    http_method_names = ["get", "post"]

    @classmethod
    def as_view(cls, **initkwargs: Any) -> Any:
        """The view, CSRF-exempt and never cached: the two decorators put around it once,
        where `method_decorator` on `dispatch` put them around the bound method again at
        every request (the same headers, the same exemption)."""
        return csrf_exempt(never_cache(super().as_view(**initkwargs)))

    def get(self, request: HttpRequest) -> HttpResponse:
        return self.handle(request)

    def post(self, request: HttpRequest) -> HttpResponse:
        return self.handle(request)

    def _validate(self, request: HttpRequest, params: QueryDict) -> tuple[list[str], dict[str, Any]]:
        """oauthlib's checks on these parameters (the request's own or pushed ones).

        As oauthlib's `validate_authorization_request` of the URL `path?params.urlencode()`,
        the parameters handed over decoded instead of written out and parsed back
        (identity/oidc/server.py, `validate_authorization_params`)."""
        core = self.get_oauthlib_core()
        items = [(name, str(value)) for name, values in params.lists() for value in values]
        try:
            return core.server.validate_authorization_params(
                request.path, items, core.extract_headers(request)
            )
        except oauth2.FatalClientError as error:
            raise FatalClientError(error=error) from error
        except oauth2.OAuth2Error as error:
            raise OAuthToolkitError(error=error) from error

    def handle(self, request: HttpRequest) -> HttpResponse:
        # ui_locales (OIDC Core §3.1.2.1): the partner's hint about the resident's language,
        # used when the resident has not chosen one on our site yet.
        language = ui_language(_params(request).get("ui_locales", ""))
        hinted = bool(language) and settings.LANGUAGE_COOKIE_NAME not in request.COOKIES
        if hinted:
            translation.activate(language)
            request.LANGUAGE_CODE = language
        response = self._handle(request)
        if hinted:
            response.set_cookie(
                settings.LANGUAGE_COOKIE_NAME,
                language,
                max_age=60 * 60 * 24 * 365,
                samesite=settings.LANGUAGE_COOKIE_SAMESITE,
                secure=settings.LANGUAGE_COOKIE_SECURE,
            )
        return response

    def _handle(self, request: HttpRequest) -> HttpResponse:
        """The steps of the module's docstring, in order; the first that answers ends the request."""
        found = self._parameters(request)
        if isinstance(found, HttpResponse):
            return found
        authz = found
        response = self._sign_in(request, authz)
        if response is not None:
            return response
        response = self._level(request, authz)
        if response is not None:
            return response
        return self._consent(request, authz)

    # --- 1. parameters and PAR ---------------------------------------------------------------

    def _parameters(self, request: HttpRequest) -> _Authorization | HttpResponse:
        """The request's parameters checked, with its client; or the error response."""
        raw = _params(request)
        self.par_uri = ""
        if is_par_urn(raw.get("request_uri")):
            # RFC 9126 §4: only the pushed parameters count (client_id must match them).
            try:
                params = par_resolve(
                    request, client_id=raw.get("client_id", ""), request_uri=raw.get("request_uri", "")
                )
            except RequestUriError as exc:
                return error_page(request, "invalid_request_uri", str(exc))
            self.par_uri = raw.get("request_uri", "")
        else:
            params = raw
        if not params.get("redirect_uri") and params.get("client_id"):
            # OIDC Core §3.1.2.1: redirect_uri is REQUIRED; never guess one.
            return error_page(request, "invalid_request", "redirect_uri is missing.")
        claims_request: dict[str, Any] | None = None
        malformed_claims = False
        if params.get("claims") is not None:
            claims_request = parse_claims_request(params["claims"])
            if claims_request is None:
                # Checked by us so that the error can be redirected once the client and the
                # redirect URI are known to be valid.
                malformed_claims = True
                params = params.copy()
                params.pop("claims")
        try:
            scopes, credentials = self._validate(request, params)
        except OAuthToolkitError as error:
            return self._oauth_error(error)
        authz = _Authorization(params=params, claims=claims_request, scopes=scopes, credentials=credentials)
        refused = _unsupported_parameter(params, malformed_claims)
        if refused is None:
            authz.client = client_by_client_id(credentials["client_id"])
            if authz.client is None:  # validated just above by oauthlib: only a concurrent deletion
                raise get_application_model().DoesNotExist
            refused = self._client_refusal(authz.client, params)
        if refused is not None:
            return authz.error(*refused)
        return authz

    def _client_refusal(self, client: Any, params: QueryDict) -> tuple[str, str] | None:
        """(error, description) when the client's own rules refuse the request."""
        if client.require_par and not self.par_uri:
            return "invalid_request", "This client must push its authorization requests (RFC 9126)."
        if params.get("code_challenge_method") != PKCE_METHOD:
            return "invalid_request", "PKCE with code_challenge_method=S256 is required."
        return None

    # --- 2. sign-in and prompt ---------------------------------------------------------------

    def _sign_in(self, request: HttpRequest, authz: _Authorization) -> HttpResponse | None:
        """`prompt`, `max_age`, `id_token_hint`: the sign-in page, or an error, or None to go on."""
        params = authz.params
        # A session ended elsewhere (sign out everywhere) signs this browser out here.
        browser_session_for_request(request)

        prompt = set(params.get("prompt", "").split())
        authz.prompt = prompt
        if "none" in prompt and len(prompt) > 1:
            return authz.error("invalid_request", "prompt=none cannot be combined.")
        browser_id = _browser_to_link(params.get("consent_browser_id"), prompt)
        if browser_id:
            authz.credentials["cum_browser_id"] = browser_id

        try:
            max_age_seconds = _max_age(params.get("max_age"))
        except ValueError:
            return authz.error("invalid_request", "max_age must be a non-negative integer.")

        if "create" in prompt and not request.user.is_authenticated:
            # OpenID Connect Prompt Create 1.0: the account-creation page, then this request.
            return self._to_login(request, params, create=True)
        if self._needs_login(request, params, prompt, max_age_seconds):
            if "none" in prompt:
                return authz.error("login_required", "The resident is not signed in.")
            return self._to_login(request, params)

        if "none" in prompt and params.get("id_token_hint"):
            # OIDC Core §3.1.2.1: a silent positive answer only for the End-User the hint
            # names; a hint we did not issue (or cannot verify) gets no silent answer either.
            matches = self._id_token_hint_matches(
                params.get("id_token_hint", ""), request.user, authz.credentials
            )
            if matches is None:
                return authz.error("invalid_request", "id_token_hint is not an ID token we issued.")
            if not matches:
                return authz.error("login_required", "Another resident is signed in.")
        return None

    # --- 3. authentication level (step-up) ---------------------------------------------------

    def _level(self, request: HttpRequest, authz: _Authorization) -> HttpResponse | None:
        """The step-up page or an error when the session is below the level asked; else None."""
        acceptable, essential = level_requirements(authz.client, authz.params, authz.claims)
        reachable = [value for value in acceptable if value in ACR_RANK]
        if essential and not reachable:
            return authz.error(
                "unmet_authentication_requirements",
                "None of the requested authentication levels is offered.",
            )
        if not reachable:
            return None
        target = min(reachable, key=lambda value: ACR_RANK[value])
        if ACR_RANK[session_acr(request)] < ACR_RANK[target]:
            if "none" in authz.prompt:
                if essential:
                    return authz.error(
                        "interaction_required",
                        "A second factor is required: the resident must interact.",
                    )
            elif not user_has_mfa(request_user(request)):
                if essential:
                    return authz.error(
                        "unmet_authentication_requirements",
                        "The resident has no second factor: the required level cannot be reached.",
                    )
            else:
                # Second factor only: the resident stays signed in (identity.mfa step-up).
                return SeeOther(step_up_url(self._resume_url(request, authz.params)))
        if essential:
            authz.credentials["cum_required_acr"] = target
        return None

    # --- 4. consent, from the ledger ---------------------------------------------------------

    def _consent(self, request: HttpRequest, authz: _Authorization) -> HttpResponse:
        """The code, the consent screen, the internal-service notice, or an error."""
        client, scopes, credentials, prompt = authz.client, authz.scopes, authz.credentials, authz.prompt
        if client.is_internal:
            # Public task: no consent screen and no ledger event (docs/partners.md); the
            # resident is told once what the service receives.

            if "none" in prompt or "consent" in prompt or not direct_issuance(scopes, credentials):
                notice = internal_notice_page(request, client, scopes, credentials, prompt)
                if notice is not None:
                    return notice
                return self._finish(request, scopes, credentials, validated_client=client)
            # Otherwise the page is due when the resident's notice does not list the scopes:
            # checked in the code's INSERT (AuthorizationMixin._finish), before anything else.
            return self._finish(
                request,
                scopes,
                credentials,
                validated_client=client,
                notice_page=partial(internal_notice_page, request, client, scopes, credentials, prompt),
            )

        if "consent" not in prompt and sharing_granted(request.user, client, scopes):
            return self._finish(request, scopes, credentials, validated_client=client)
        if "none" in prompt:
            return authz.error("consent_required", "The resident has not approved this client.")
        purpose_code = sharing_purpose_code(client, scopes)
        if purpose_code is None:
            return authz.error("invalid_scope", "These scopes cannot be shared.")
        return self._ask_consent(request, client, scopes, credentials, purpose_code)

    def _resume_url(self, request: HttpRequest, params: QueryDict) -> str:
        """Where the browser comes back to this request (after sign-in or step-up)."""
        if self.par_uri:
            par_keep_for_resume(request, request_uri=self.par_uri, params=params)
            query = {"client_id": params.get("client_id", ""), "request_uri": self.par_uri}
            return reverse("oidc:authorize") + "?" + urlencode(query)
        return reverse("oidc:authorize") + "?" + params.urlencode()

    def _id_token_hint_matches(self, hint: str, user: Any, credentials: dict[str, Any]) -> bool | None:
        """Whether an ID token we signed (expired ones accepted) names `user`; None if not ours."""
        validator = oauth2_settings.OAUTH2_VALIDATOR_CLASS()
        key = validator.key_for_token(hint)
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
        client = client_by_client_id(hint_client_id or "")
        if client is None:
            return None
        return claims.get("sub") == subject_for(client, user)

    def _needs_login(
        self, request: HttpRequest, params: QueryDict, prompt: set[str], max_age: int | None
    ) -> bool:
        """Whether this request needs a (new) sign-in first.

        `prompt=login` and a `max_age` the session's sign-in is too old for are kept in the
        request we resume after the sign-in page (its URL, or the pushed request kept in the
        session): they are not dropped, or opening the resume URL without signing in would
        skip them (issue 9, finding 4). What ends them is a sign-in at or after the moment
        this browser was sent to sign in for this very request (`_to_login` records it):
        then the request proceeds, so that max_age=0 or prompt=login do not loop.
        """
        user = request.user
        if not user.is_authenticated:
            return True
        auth_time = session_auth_time(request)
        demanded = "login" in prompt or (
            max_age is not None and (auth_time is None or time.time() - auth_time.timestamp() > max_age)
        )
        if not demanded:
            return False
        asked_at = _sign_in_asked_at(request, self._request_key(params))
        return asked_at is None or auth_time is None or auth_time.timestamp() < asked_at

    def _request_key(self, params: QueryDict) -> str:
        """What identifies this authorization request when it comes back after the sign-in."""
        if self.par_uri:
            source = "par:" + self.par_uri
        else:
            source = "query:" + urlencode(sorted((name, params.getlist(name)) for name in params), doseq=True)
        return hashlib.sha256(source.encode("utf-8")).hexdigest()

    def _to_login(self, request: HttpRequest, params: QueryDict, create: bool = False) -> HttpResponse:
        resumed = params.copy()
        # prompt=create is done once the account exists; prompt=login and max_age stay.
        remaining = [value for value in resumed.get("prompt", "").split() if value != "create"]
        if remaining:
            resumed["prompt"] = " ".join(remaining)
        else:
            resumed.pop("prompt", None)
        _sign_in_asked(request, self._request_key(resumed))
        next_url = self._resume_url(request, resumed)
        login_url = reverse("identity:register") if create else reverse(settings.LOGIN_URL)
        extra = {}
        if params.get("login_hint"):
            extra["login_hint"] = params["login_hint"]
        response = redirect_to_login(next_url, login_url)
        if extra:
            response["Location"] += "&" + urlencode(extra)
        return response

    def _ask_consent(
        self,
        request: HttpRequest,
        client: Any,
        scopes: list[str],
        credentials: dict[str, Any],
        purpose_code: str,
    ) -> HttpResponse:
        pending = request.session.get(PENDING_SESSION_KEY, {})
        if len(pending) >= MAX_PENDING:
            oldest = sorted(pending.items(), key=lambda item: item[1]["created"])[
                : len(pending) - MAX_PENDING + 1
            ]
            for key, _value in oldest:
                pending.pop(key, None)
        pending_id = secrets.token_urlsafe(16)
        safe_credentials = {key: value for key, value in credentials.items() if key in PENDING_CREDENTIALS}
        pending[pending_id] = {
            "created": int(time.time()),
            "user": str(request.user.pk),
            "scopes": scopes,
            "credentials": safe_credentials,
            "purpose": purpose_code,
        }
        request.session[PENDING_SESSION_KEY] = pending

        return render(
            request,
            "oidc/consent.html",
            {
                "client": client,
                "scopes": describe_scopes(scopes),
                "pending_id": pending_id,
                "account_url": reverse("identity:account"),
            },
        )


@method_decorator(never_cache, name="dispatch")
class AuthorizeDecisionView(AuthorizationMixin, View):
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
                _("Cette demande d'autorisation a expiré. Retournez sur le service et recommencez."),
            )
        if time.time() - item["created"] > 30 * 60:
            return error_page(request, "invalid_request", _("Cette demande d'autorisation a expiré."))
        credentials = item["credentials"]
        purpose_code = item.get("purpose")

        try:
            if request.POST.get("decision") != "allow":
                if purpose_code:
                    with transaction.atomic():
                        consent_decision_record(user=request.user, purpose_code=purpose_code, allow=False)
                return redirect_error(
                    credentials["redirect_uri"],
                    "access_denied",
                    "The resident refused.",
                    credentials.get("state"),
                )
            return self._finish(request, item["scopes"], credentials, consent_purpose=purpose_code)
        except LedgerTampered as exc:
            # The consent ledger is altered (issue 9, finding 10's class): the answer was not
            # recorded, no code was issued (same transaction), nothing goes to the partner.

            ledger_tampered_audit(exc=exc, operation="oidc_consent")
            return render(request, "oidc/consent_unrecorded.html", status=503)
