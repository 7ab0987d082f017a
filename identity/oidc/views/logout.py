"""RP-Initiated Logout 1.0 (end_session_endpoint), with Front-Channel Logout 1.0 on the signed-out page.

What the OP does with a logout request (§2, §3 of RP-Initiated Logout):

- `id_token_hint` is trusted only if it is an ID token we signed (expired ones accepted)
  and, with `client_id`, issued to that client. `post_logout_redirect_uri` is followed
  only if it is registered, exactly, for the client the (trusted) request names.
- Signed in, with a trusted hint naming the signed-in resident and this browser session
  (`sid`): the resident is signed out at once, unless a `logout_hint` names someone else.
- `logout_hint` (§2) is compared with the signed-in resident only, as the requesting
  client knows them: its `sub` for the resident (identity/oidc/subjects.subject_for), or
  the resident's email address (case-insensitive). When it names anyone else, the resident
  is asked instead (the same confirmation page, which neither repeats the hint nor says
  why it is shown). No other account is ever looked up, so the relying party cannot learn
  whether its hint names an account of ours; without a session the hint changes nothing.
- Otherwise the resident is asked (a CSRF-protected "Se déconnecter" button). When
  anything in the request could not be trusted (bad/modified/foreign-signed hint, unknown
  or mismatching client, unregistered redirect), the confirmation page says so and the
  resident is never redirected: after signing out they see our signed-out page.
- After sign-out: redirect to the registered URI (with `state`), or the signed-out page.
  When partners of the session registered a front-channel logout URI, the signed-out page
  is shown first: it loads each URI (with `iss` and `sid`) in an invisible iframe, its
  Content-Security-Policy allowing exactly those origins in `frame-src`, and links on to
  the registered redirect.

Signing out ends the browser session record (identity.sessions.session_end): tokens of the
session revoked, back-channel logout queued for its partners.

The spec requires both GET and POST from the relying party (§2). A relying party's POST
arrives cross-site and without our CSRF token, so CSRF protection cannot apply to it as
it does to the confirmation form we show ourselves: the view is exempt as a whole and
the confirmation (the only POST carrying `allow`) is checked explicitly.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth import logout as django_logout
from django.http import HttpRequest, HttpResponse, QueryDict
from django.middleware.csrf import CsrfViewMiddleware
from django.shortcuts import render
from django.urls import reverse
from django.utils.decorators import method_decorator
from django.views import View
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from jwcrypto import jwt
from jwcrypto.common import JWException
from oauth2_provider.forms import ConfirmLogoutForm

from common.ratelimit import client_ip
from identity.client_cache import client_by_client_id
from identity.middleware import DEFAULT_CSP
from identity.models import normalize_email
from identity.oidc.backchannel import frontchannel_logout_urls, origin_of
from identity.oidc.errors import SeeOther, add_query
from identity.oidc.request_validator import Validator
from identity.oidc.subjects import subject_for
from identity.sessions import EndReason, browser_session_for_request, session_end


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    return CsrfViewMiddleware(lambda _request: HttpResponse()).process_view(request, None, (), {})


def verify_id_token_hint(hint: str) -> dict[str, Any] | None:
    """The claims of an ID token we issued (signature by a published key, our `iss`), or None.

    Expired tokens are accepted (RP-Initiated Logout §2: the hint may have expired).
    """

    key = Validator().key_for_token(hint)
    if key is None:
        return None
    try:
        claims = json.loads(jwt.JWT(key=key, jwt=hint, check_claims={}).claims)
    except (JWException, ValueError, TypeError):
        return None
    if not isinstance(claims, dict) or claims.get("iss") != settings.ISSUER:
        return None
    return claims


def _audiences(claims: dict[str, Any]) -> list[str]:
    audience = claims.get("aud")
    return [str(value) for value in (audience if isinstance(audience, list) else [audience]) if value]


def logout_hint_designates(logout_hint: str, application: Any, user: Any) -> bool:
    """Whether a `logout_hint` names `user`: the client's `sub` for them, or their email."""

    value = logout_hint.strip()
    if not value:
        return True  # an empty hint hints at nothing
    if application is not None and value == subject_for(application, user):
        return True
    email = normalize_email(getattr(user, "email", "") or "")
    return bool(email) and normalize_email(value) == email


@dataclass
class LogoutRequest:
    hint: str = ""
    logout_hint: str = ""
    client_id: str = ""
    post_logout_redirect_uri: str = ""
    state: str = ""
    claims: dict[str, Any] | None = None
    application: Any = None
    redirect_uri: str = ""  # set only when it may be followed
    problems: list[str] = field(default_factory=list)

    @property
    def trusted(self) -> bool:
        return not self.problems

    def redirect_target(self) -> str:
        if not self.redirect_uri:
            return ""
        return add_query(self.redirect_uri, {"state": self.state}) if self.state else self.redirect_uri


def evaluate(params: QueryDict) -> LogoutRequest:
    request = LogoutRequest(
        hint=params.get("id_token_hint") or "",
        logout_hint=params.get("logout_hint") or "",
        client_id=params.get("client_id") or "",
        post_logout_redirect_uri=params.get("post_logout_redirect_uri") or "",
        state=params.get("state") or "",
    )
    if request.hint:
        request.claims = verify_id_token_hint(request.hint)
        if request.claims is None:
            request.problems.append("id_token_hint")
    if request.client_id:
        request.application = client_by_client_id(request.client_id)
        if request.application is None:
            request.problems.append("client_id")
    if request.claims is not None:
        audiences = _audiences(request.claims)
        if request.application is not None and request.application.client_id not in audiences:
            request.problems.append("client_id_mismatch")
        elif request.application is None and not request.client_id:
            hinted = request.claims.get("azp") or (audiences[0] if audiences else "")
            request.application = client_by_client_id(hinted)
    if request.post_logout_redirect_uri:
        if (
            request.trusted
            and request.application is not None
            and request.application.post_logout_redirect_uri_allowed(request.post_logout_redirect_uri)
        ):
            request.redirect_uri = request.post_logout_redirect_uri
        else:
            request.problems.append("post_logout_redirect_uri")
    return request


@method_decorator([csrf_exempt, never_cache], name="dispatch")
class EndSessionView(View):
    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._logout_request(request, request.GET)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if "allow" in request.POST:
            # The resident's answer on our confirmation page: CSRF-protected.
            failure = _csrf_failure(request)
            if failure is not None:
                return failure
            return self._confirmed(request, request.POST)
        # A logout request the relying party sent by POST (RP-Initiated Logout §2).
        return self._logout_request(request, request.POST)

    # --- steps -------------------------------------------------------------------------------
    def _logout_request(self, request: HttpRequest, params: QueryDict) -> HttpResponse:
        logout = evaluate(params)
        session = browser_session_for_request(request)
        if session is None:
            # Not signed in here: nothing to end, nothing to ask.
            return self._after_logout(request, logout, [], None)
        if self._may_skip_confirmation(request, logout, session):
            return self._sign_out(request, logout)
        return self._confirmation_page(request, logout)

    def _confirmed(self, request: HttpRequest, params: QueryDict) -> HttpResponse:
        return self._sign_out(request, evaluate(params))

    def _may_skip_confirmation(self, request: HttpRequest, logout: LogoutRequest, session: Any) -> bool:
        """§2: ask unless a trusted hint names the signed-in resident and this session
        (and `logout_hint`, when given, names that resident too)."""
        if not logout.trusted or logout.claims is None or logout.application is None:
            return False
        if logout.claims.get("sub") != subject_for(logout.application, request.user):
            return False
        if logout.logout_hint and not logout_hint_designates(
            logout.logout_hint, logout.application, request.user
        ):
            return False
        hinted_sid = logout.claims.get("sid")
        return hinted_sid is None or hinted_sid == session.sid

    def _sign_out(self, request: HttpRequest, logout: LogoutRequest) -> HttpResponse:
        session = browser_session_for_request(request, adopt=False)
        clients: list[Any] = []
        if session is not None:
            ended = session_end(
                session=session,
                reason=EndReason.RP_LOGOUT,
                acting_user=request.user,
                ip=client_ip(request),
                delete_django_session=False,
            )
            clients = ended.clients
        if request.user.is_authenticated:
            django_logout(request)
        return self._after_logout(request, logout, clients, session)

    def _after_logout(
        self, request: HttpRequest, logout: LogoutRequest, clients: list[Any], session: Any
    ) -> HttpResponse:
        target = logout.redirect_target()
        frontchannel = frontchannel_logout_urls(session, clients) if session is not None else []
        if target and not frontchannel:
            return SeeOther(target)
        response = render(
            request,
            "oidc/signed_out.html",
            {"redirect_uri": target, "frontchannel_urls": frontchannel},
        )
        if frontchannel:
            # Front-Channel Logout §2: this page (only) may frame the partners' logout URIs.
            origins = " ".join(sorted({origin_of(url) for url in frontchannel}))
            response["Content-Security-Policy"] = f"{DEFAULT_CSP}; frame-src {origins}"
        return response

    def _confirmation_page(self, request: HttpRequest, logout: LogoutRequest) -> HttpResponse:
        initial = (
            {
                "id_token_hint": logout.hint,
                "client_id": logout.client_id,
                "post_logout_redirect_uri": logout.post_logout_redirect_uri,
                "state": logout.state,
            }
            if logout.trusted
            else {}  # nothing untrusted is carried into the confirmation: no redirect after it
        )
        form = ConfirmLogoutForm(initial={key: value for key, value in initial.items() if value})
        context = {
            "form": form,
            "application": logout.application if logout.trusted else None,
            "untrusted": not logout.trusted,
            "action": reverse("oidc:end-session"),
        }
        return render(request, "oidc/logout_confirm.html", context)
