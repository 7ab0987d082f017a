"""What the authorization endpoint and the pages that resume a request share.

The authorization endpoint (identity/oidc/views/authorize.py) and the pages that resume a
request after asking the resident something (its consent decision view, the information
page of internal services in identity/oidc/internal_notice.py) keep the request's
credentials in the session between two requests (`PENDING_CREDENTIALS`: only those) and
finish it the same way (`AuthorizationMixin._finish`): the code, with the browser session,
the authentication level reached and the cookie-consent link ticket. Both import from
here, neither from the other.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import nullcontext
from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from django.db import transaction
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext as _
from oauth2_provider.exceptions import FatalClientError, OAuthToolkitError
from oauth2_provider.views.mixins import OAuthLibMixin

from consent.api.cookie import cookie_link_ticket_issue
from identity.levels import ACR_RANK
from identity.mfa.selectors import session_acr
from identity.oidc.code_issuance import (
    direct_issuance,
    issue_validated_code,
    issue_validated_code_if_noticed,
)
from identity.oidc.errors import ClientRedirect, error_page, redirect_error
from identity.oidc.sharing import consent_decision_record
from identity.request_user import request_user
from identity.selectors import session_amr, session_auth_time
from identity.sessions import browser_session_for_request

PENDING_CREDENTIALS = {
    "client_id",
    "redirect_uri",
    "response_type",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "claims",
    "cum_required_acr",
    "dpop_jkt",  # RFC 9449 §10, as checked by Validator.validate_authorization_dpop_jkt
    "resource",  # RFC 8707, as checked by Validator.validate_authorization_resource
    "cum_browser_id",  # the consent_browser_id parameter, checked (authorize._browser_to_link)
}


class AuthorizationMixin(OAuthLibMixin):
    """Issuing the code (or the error redirect) once every check of the request passed."""

    def _finish(
        self,
        request: HttpRequest,
        scopes: list[str],
        credentials: dict[str, Any],
        consent_purpose: str | None = None,
        validated_client: Any = None,
        notice_page: Callable[[], HttpResponse | None] | None = None,
    ) -> HttpResponse:
        """Issue the code; with `consent_purpose`, record the grant in the same transaction.

        `validated_client`: the authorization endpoint's client, when these credentials were
        validated by oauthlib in this very request (`AuthorizeView._validate`): the code is
        then written without validating them again (identity/oidc/code_issuance.py). The pages
        that resume a request pass none: oauthlib validates their kept credentials.

        `notice_page` (never with `consent_purpose`: internal services record no consent):
        an internal service's information page (identity/oidc/internal_notice.py,
        `internal_notice_page`) not checked yet. It answers before anything else here, as
        when the caller checked it before this call: for a request `direct_issuance` takes,
        the code is written only if the resident's notice lists the scopes, in the code's
        INSERT itself (one round trip fewer); when that wrote nothing, before an error
        answer, or before oauthlib's issuance, the page is checked the usual way.
        """
        credentials = dict(credentials)
        credentials["auth_time"] = session_auth_time(request)
        session = browser_session_for_request(request)
        if session is None:
            # Signed out (or revoked from another device) since the page was shown.
            page = notice_page() if notice_page is not None else None
            if page is not None:
                return page
            return error_page(request, "login_required", _("Votre session a pris fin. Reconnectez-vous."))
        required = credentials.pop("cum_required_acr", None)
        reached = session_acr(request)
        if required and ACR_RANK.get(reached, 0) < ACR_RANK.get(required, 99):
            # The session changed since the level was checked (e.g. a new sign-in elsewhere).
            page = notice_page() if notice_page is not None else None
            if page is not None:
                return page
            return redirect_error(
                credentials["redirect_uri"],
                "unmet_authentication_requirements",
                "The authentication level required by the client was not reached.",
                credentials.get("state"),
            )
        # The code, then the tokens, carry the browser session (sid in the ID token) and the
        # level reached now (acr/amr in the ID token).
        credentials["cum_sid"] = session.sid
        credentials["cum_acr"] = reached
        credentials["cum_amr"] = session_amr(request)
        browser_id = credentials.pop("cum_browser_id", None)
        try:
            # The consent event and the code in one transaction. Without a consent to record,
            # the code's one INSERT (identity/oidc/code_issuance.py, or
            # Validator._create_authorization_code on the reference path) is the only
            # write: it needs no transaction of its own (no BEGIN/COMMIT round trips).
            with transaction.atomic() if consent_purpose else nullcontext():
                if consent_purpose:
                    consent_decision_record(user=request.user, purpose_code=consent_purpose, allow=True)
                direct = validated_client is not None and direct_issuance(scopes, credentials)
                found = None
                if notice_page is not None:
                    if direct:
                        found = issue_validated_code_if_noticed(
                            request, validated_client, scopes, credentials
                        )
                    if found is None:
                        # Nothing written (the notice does not list the scopes by the INSERT's
                        # test): the page as before; when it is not due after all, the code.
                        page = notice_page()
                        if page is not None:
                            return page
                if found is not None:
                    uri = found
                elif direct:
                    uri = issue_validated_code(request, validated_client, scopes, credentials)
                else:
                    uri, _headers, _body, _status = self.create_authorization_response(
                        request=request, scopes=" ".join(scopes), credentials=credentials, allow=True
                    )
        except OAuthToolkitError as error:
            return self._oauth_error(error, credentials)
        if browser_id:
            uri = with_link_ticket(uri, request, credentials.get("client_id", ""), browser_id)
        return ClientRedirect(uri)

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


def with_link_ticket(uri: str, request: HttpRequest, client_id: str, browser_id: str) -> str:
    """The code redirect plus `consent_link_ticket`, a one-time ticket the partner page's widget redeems
    with that browser's secret (consent.api.cookie explains why it takes both)."""

    ticket = cookie_link_ticket_issue(user=request_user(request), client_id=client_id, browser_id=browser_id)
    if ticket is None:
        return uri
    parts = urlsplit(uri)
    extra = urlencode({"consent_link_ticket": ticket})
    return urlunsplit(parts._replace(query=f"{parts.query}&{extra}" if parts.query else extra))
