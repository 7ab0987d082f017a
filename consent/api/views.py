"""Cookie-consent API for partner sites (CORS) and the resident's receipt download.

- GET  /consent/api/v1/cookie/config?client_id=…          what the banner asks
- GET  /consent/api/v1/cookie/choices?client_id=…&browser_id=…   current choices
- POST /consent/api/v1/cookie/choices?client_id=…         record choices (JSON body)
- OPTIONS on both                                          CORS preflight
- GET  /consent/api/v1/cookie/receipts/<id>?client_id=…&browser_id=…  receipt of a visitor's event
- POST /consent/api/v1/cookie/attach?client_id=…          the widget redeems a link ticket with
                                                           its browser id and secret (CORS)
- POST /consent/api/v1/cookie/link                          attach a browser (id + secret) to the
                                                           signed-in resident (session + CSRF, same site)
- GET  /consent/recus/<id>.jws                              a signed-in resident's own receipt

Errors are RFC 7807 problem details; nothing is recorded on bad input.
"""

from __future__ import annotations

import logging
import math
import uuid
from typing import Any

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from common import ratelimit
from common.openapi import problem_responses, retry_after_header
from consent.api import cookie, cors
from consent.api import schema as api_schema
from consent.api import selectors as api_selectors
from consent.api.partner_page import PartnerPageAPIView, rate_limited
from consent.api.problems import api_problem, browser_secret_problem, json_object_body, origin_problem
from consent.receipts import receipt_for_event
from consent.services import BrowserProofError, ConsentError, LedgerTampered, ledger_tampered_audit
from identity.request_user import request_user

logger = logging.getLogger(__name__)

MAX_BODY_BYTES = 8 * 1024
RECEIPT_CONTENT_TYPE = "application/jose"

# --- The OpenAPI description of these views (consent.api.schema holds the bodies) ---------------
COOKIE_TAG = "Cookie consent"
_CLIENT_ID = OpenApiParameter(
    "client_id",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    required=True,
    description="The partner's client_id. Unknown or missing: 400.",
)
_CLIENT_ID_OPTIONAL = OpenApiParameter(
    "client_id",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    description="The partner's client_id, if given here too: it must be the body's (else 400).",
)
_BROWSER_ID = OpenApiParameter(
    "browser_id",
    OpenApiTypes.UUID,
    OpenApiParameter.QUERY,
    required=True,
    description="The widget's browser id.",
)
_ORIGIN_READ = OpenApiParameter(
    "Origin",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="Set by the browser. An origin registered on the client (`allowed_origins`) gets the "
    "CORS headers; any other gets none, and the browser withholds the answer.",
)
_ORIGIN_WRITE = OpenApiParameter(
    "Origin",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="Set by the browser: an origin registered on the client (`allowed_origins`), else 403 "
    "`origin_not_allowed`.",
)
_RECEIPT = OpenApiResponse(
    OpenApiTypes.STR, description="The signed receipt: a JWS (compact serialisation), as an attachment."
)
_LEDGER_503 = (
    "The consent ledger is altered (`ledger_tampered`): nothing was recorded; retry after `Retry-After`"
)


def _throttled(request: HttpRequest) -> int:
    """Count this POST for the client IP; seconds to wait when over the limit, else 0."""
    limits = settings.CONSENT_COOKIE_RATE_LIMIT
    window = int(limits["window_seconds"])
    bucket = ratelimit.ip_bucket(ratelimit.client_ip(request))
    if ratelimit.hit("consent-cookie-ip", bucket, window) > int(limits["per_ip"]):
        _start, left = ratelimit.window(window)
        return max(1, math.ceil(left))
    return 0


def _ledger_problem(exc: LedgerTampered, operation: str) -> JsonResponse:
    """503 urn:cum:problem:ledger_tampered: the consent ledger is altered in the database, so
    nothing was recorded (no choice, no attachment). 503 rather than 409: the partner's request
    was right and there is no state it could change to resolve a conflict; the service cannot
    record consents until the incident is handled, and a widget retries a 503 later (meanwhile
    no choice counts as refusal). The positions are for the DPO (audit row), not the partner."""
    ledger_tampered_audit(exc=exc, operation=operation)
    response = api_problem(
        503,
        "ledger_tampered",
        _("Registre des consentements indisponible"),
        _(
            "Le registre des consentements est altéré : rien n'a été enregistré. "
            "L'incident est signalé ; réessayez plus tard."
        ),
    )
    response["Retry-After"] = "3600"
    return response


def _input_problem(exc: cookie.CookieInputError) -> JsonResponse:
    return api_problem(400, exc.code, _("Requête invalide"), str(exc), errors=exc.errors)


def _too_many(retry_after: int) -> JsonResponse:
    return rate_limited(retry_after, _("Trop de choix envoyés depuis cette adresse. Réessayez plus tard."))


def _json_body(request: Request) -> dict[str, Any] | JsonResponse:
    """The JSON object of a small application/json body, or the problem to answer."""
    return json_object_body(request._request, max_bytes=MAX_BODY_BYTES)


def _receipt_response(event: Any) -> HttpResponse:
    response = HttpResponse(receipt_for_event(event), content_type=RECEIPT_CONTENT_TYPE)
    response["Content-Disposition"] = f'attachment; filename="recu-{event.id}.jws"'
    response["Cache-Control"] = "no-store"
    return response


class CookieAPIView(PartnerPageAPIView):
    """Anonymous, cross-origin JSON: no session, no cookie set, CORS per partner client."""

    # The shared part (CORS, no-store, the preflight) is consent.api.partner_page's.

    session_user: Any = None

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        # DRF replaces the Django user with its own (None here: no authenticator) during
        # super().initial(); keep the session's user for the same-origin case.
        self.session_user = getattr(request._request, "user", None)
        super().initial(request, *args, **kwargs)

    def _client_or_problem(self, client_id: Any) -> tuple[Any, JsonResponse | None]:
        if client_id in (None, ""):
            return None, api_problem(
                400,
                "missing_client_id",
                _("Requête invalide"),
                _("client_id est obligatoire."),
                errors={"client_id": "required"},
            )
        client = api_selectors.client_by_client_id(client_id)
        if client is None:
            return None, api_problem(
                400,
                "unknown_client",
                _("Service partenaire inconnu"),
                _("Aucun service partenaire n'est enregistré sous ce client_id."),
                errors={"client_id": "unknown"},
            )
        return client, None

    def _partner_post(self, request: Request) -> tuple[Any, dict[str, Any]] | HttpResponse:
        """What every write from a partner page checks first: the rate limit, a JSON body,
        a registered client (the same in the address, if given there) and its origin."""
        retry_after = _throttled(request._request)
        if retry_after:
            return _too_many(retry_after)
        body = _json_body(request)
        if isinstance(body, JsonResponse):
            return body
        client, error = self._client_or_problem(body.get("client_id"))
        if error is not None:
            return error
        query_client_id = request.query_params.get("client_id")
        if query_client_id and query_client_id != client.client_id:
            return api_problem(
                400,
                "client_id_mismatch",
                _("Requête invalide"),
                _("Le client_id de l'adresse et celui du corps diffèrent."),
            )
        self.cors_client = client
        if not cors.origin_allowed(client, self.origin):
            return origin_problem()
        return client, body


class CookieConfigView(CookieAPIView):
    @extend_schema(
        tags=[COOKIE_TAG],
        operation_id="cookie_config",
        summary="What a partner site's banner asks",
        description="The purposes of the cookie banner in French and English, their legal basis, how "
        "long a choice is kept, the notices and the controller. Anonymous; no cookie is set.",
        parameters=[_CLIENT_ID, _ORIGIN_READ],
        responses={200: api_schema.CookieConfigSerializer, **problem_responses(400)},
    )
    def get(self, request: Request) -> HttpResponse:
        client, error = self._client_or_problem(request.query_params.get("client_id"))
        if error is not None:
            return error
        return JsonResponse(cookie.cookie_config(client))


class CookieChoicesView(CookieAPIView):
    @extend_schema(
        tags=[COOKIE_TAG],
        operation_id="cookie_choices_read",
        summary="A browser's current choices",
        description="Per purpose: whether it is allowed now (silence is refusal) and the decision in "
        "force with its receipt. Anonymous.",
        parameters=[_CLIENT_ID, _BROWSER_ID, _ORIGIN_READ],
        responses={200: api_schema.CookieStateSerializer, **problem_responses(400)},
    )
    def get(self, request: Request) -> HttpResponse:
        _client, error = self._client_or_problem(request.query_params.get("client_id"))
        if error is not None:
            return error
        try:
            browser_id = cookie.parse_browser_id(request.query_params.get("browser_id"), required=True)
        except cookie.CookieInputError as exc:
            return _input_problem(exc)
        assert browser_id is not None
        return JsonResponse(cookie.cookie_state(browser_id=browser_id))

    @extend_schema(
        tags=[COOKIE_TAG],
        operation_id="cookie_choices_record",
        summary="Record a browser's choices",
        description="One ledger event per choice, all or nothing; nothing is recorded on bad input. The "
        "first call without `browser_id` registers a new browser and returns its `browser_secret` once; "
        "later calls for that browser must send it. Anonymous and cross-origin: the `client_id` and the "
        "browser's `Origin` (registered on the client) identify the partner site. Rate-limited per "
        "address (429).",
        parameters=[_CLIENT_ID_OPTIONAL, _ORIGIN_WRITE, retry_after_header(429, 503)],
        request={"application/json": api_schema.CookieChoicesSerializer},
        responses={
            201: api_schema.CookieChoicesResultSerializer,
            **problem_responses(
                400,
                403,
                413,
                415,
                429,
                503,
                descriptions={
                    403: "`origin_not_allowed` (the Origin is not registered on the client) or "
                    "`browser_secret_invalid` (missing or wrong secret for this browser)",
                    503: _LEDGER_503,
                },
            ),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        checked = self._partner_post(request)
        if isinstance(checked, HttpResponse):
            return checked
        client, body = checked
        try:
            browser_id = cookie.parse_browser_id(body.get("browser_id"), required=False)
            browser_secret = cookie.parse_browser_secret(body.get("browser_secret"))
            choices = cookie.parse_choices(body.get("choices"))
        except cookie.CookieInputError as exc:
            return _input_problem(exc)
        try:
            result = cookie.cookie_choices_record(
                client=client,
                browser_id=browser_id,
                browser_secret=browser_secret,
                choices=choices,
                origin=self.origin,
                signed_in_user=self._same_site_resident(request),
            )
        except BrowserProofError:
            return browser_secret_problem()
        except LedgerTampered as exc:
            return _ledger_problem(exc, "cookie_choices")
        except ConsentError as exc:
            return api_problem(400, "consent_refused", _("Choix non enregistré"), str(exc))
        logger.info(
            "cookie choices recorded client=%s events=%s",
            client.client_id,
            [str(e.id) for e in result.events],
        )
        expires_at = result.expires_at
        secret = {"browser_secret": result.browser_secret} if result.browser_secret else {}
        return JsonResponse(
            {
                "browser_id": result.browser_id,
                **secret,
                "receipt_ids": [str(event.id) for event in result.events],
                "choices": choices,
                "expires_at": expires_at.isoformat() if expires_at else None,
                "linked_to_account": bool(result.linked) or None,
            },
            status=201,
        )

    def _same_site_resident(self, request: Request) -> Any:
        """The signed-in resident, only for a request made by our own pages (same origin).

        The browser sets `Origin` and a page of another origin cannot forge ours, so this is
        the same check Django's CSRF protection makes on the Origin header. A non-browser
        client can send any Origin, but not the resident's session cookie: the session is
        what proves whose browser this is. Even then a browser we already know is attached
        only with its secret (cookie_choices_record): the id in the body proves nothing.
        """
        if self.origin != cors.normalise_origin(settings.ISSUER):
            return None
        user = self.session_user
        return user if user is not None and user.is_authenticated else None


class CookieReceiptView(CookieAPIView):
    """A visitor's receipt, for whoever holds the browser id the event was recorded under."""

    @extend_schema(
        tags=[COOKIE_TAG],
        operation_id="cookie_receipt",
        summary="The receipt of a browser's event",
        description="The signed consent receipt (Kantara v1.1 + ISO/IEC TS 27560, a JWS) of an event "
        "recorded for this browser id. Anonymous.",
        parameters=[_CLIENT_ID, _BROWSER_ID, _ORIGIN_READ],
        responses={
            (200, RECEIPT_CONTENT_TYPE): _RECEIPT,
            **problem_responses(400, 404, descriptions={404: "No such event for this browser"}),
        },
    )
    def get(self, request: Request, event_id: uuid.UUID) -> HttpResponse:
        _client, error = self._client_or_problem(request.query_params.get("client_id"))
        if error is not None:
            return error
        try:
            browser_id = cookie.parse_browser_id(request.query_params.get("browser_id"), required=True)
        except cookie.CookieInputError as exc:
            return _input_problem(exc)
        assert browser_id is not None
        event = api_selectors.event_of_browser(browser_id=browser_id, event_id=event_id)
        if event is None:
            return api_problem(404, "not_found", _("Reçu introuvable"))
        return _receipt_response(event)


class CookieAttachView(CookieAPIView):
    """POST {client_id, browser_id, browser_secret, link_ticket}: the widget attaches its browser.

    The ticket comes from the end of the resident's own successful authorization (the
    `consent_link_ticket` parameter of the redirect to the partner, consent.api.cookie); the id and
    secret from the widget's storage. Anonymous and cross-origin like the other calls: the
    proof is the ticket and the secret together, not the Origin header (any non-browser
    client can set it), which is only checked so that browsers treat it like `choices`.
    """

    @extend_schema(
        tags=[COOKIE_TAG],
        operation_id="cookie_attach",
        summary="Attach the browser to the resident who just signed in",
        description="The widget redeems the single-use `consent_link_ticket` of the redirect after a "
        "successful sign-in, with its browser id and secret: the browser's choices are attached to "
        "the resident's account. Anonymous and cross-origin like `choices`; every failure of the "
        "ticket is the same 400 `invalid_link`.",
        parameters=[_CLIENT_ID_OPTIONAL, _ORIGIN_WRITE, retry_after_header(429, 503)],
        request={"application/json": api_schema.CookieAttachSerializer},
        responses={
            200: api_schema.CookieLinkedSerializer,
            **problem_responses(
                400, 403, 413, 415, 429, 503, descriptions={403: "`origin_not_allowed`", 503: _LEDGER_503}
            ),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        checked = self._partner_post(request)
        if isinstance(checked, HttpResponse):
            return checked
        client, body = checked
        try:
            browser_id = cookie.parse_browser_id(body.get("browser_id"), required=True)
            browser_secret = cookie.parse_browser_secret(body.get("browser_secret"))
        except cookie.CookieInputError as exc:
            return _input_problem(exc)
        assert browser_id is not None
        try:
            _user, linked = cookie.cookie_link_ticket_redeem(
                ticket=body.get("link_ticket"),
                client_id=client.client_id,
                browser_id=browser_id,
                browser_secret=browser_secret,
            )
        except LedgerTampered as exc:
            return _ledger_problem(exc, "cookie_attach")
        except (cookie.LinkTicketError, ConsentError):
            # One answer for every failure: the ticket was used up either way.
            return api_problem(
                400,
                "invalid_link",
                _("Rattachement impossible"),
                _(
                    "Ce lien de rattachement est inconnu, expiré, déjà utilisé "
                    "ou ne correspond pas à ce navigateur."
                ),
                errors={"link_ticket": "invalid"},
            )
        logger.info(
            "cookie browser attached client=%s events=%s", client.client_id, [str(e.id) for e in linked]
        )
        return JsonResponse({"browser_id": browser_id, "linked_event_ids": [str(e.id) for e in linked]})


class CookieLinkView(APIView):
    """POST {browser_id, browser_secret}: attach this browser's choices to the signed-in resident.

    Same-site only (session cookie + CSRF token), for our own pages; the browser's secret is
    required, the id alone proves nothing (docs/partners.md). Partner sites use link tickets
    (CookieAttachView).
    """

    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]

    @extend_schema(
        tags=[COOKIE_TAG],
        operation_id="cookie_link",
        summary="Attach a browser to the signed-in resident (our own pages)",
        description="Same site only: the session cookie and the CSRF token of our page. The browser's "
        "secret is required; its id alone proves nothing. Partner sites use `cookie_attach`.",
        parameters=[retry_after_header(503)],
        request={"application/json": api_schema.CookieLinkSerializer},
        responses={
            200: api_schema.CookieLinkedSerializer,
            **problem_responses(
                400,
                403,
                415,
                503,
                descriptions={
                    400: "`browser_secret_invalid`, an invalid browser id, or a body that is not JSON",
                    403: "Not signed in, or no valid CSRF token",
                    503: _LEDGER_503,
                },
            ),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        data = request.data if isinstance(request.data, dict) else {}
        try:
            browser_id = cookie.parse_browser_id(data.get("browser_id"), required=True)
            browser_secret = cookie.parse_browser_secret(data.get("browser_secret"))
        except cookie.CookieInputError as exc:
            return _input_problem(exc)
        assert browser_id is not None
        try:
            linked = cookie.cookie_browser_link(
                browser_id=browser_id, browser_secret=browser_secret, user=request_user(request)
            )
        except LedgerTampered as exc:
            return _ledger_problem(exc, "cookie_link")
        except BrowserProofError:
            return api_problem(
                400,
                "browser_secret_invalid",
                _("Navigateur non reconnu"),
                _("Le secret de ce navigateur est absent ou faux."),
                errors={"browser_secret": "invalid"},
            )
        return JsonResponse({"browser_id": browser_id, "linked_event_ids": [str(e.id) for e in linked]})


@never_cache
@require_GET
@login_required
def resident_receipt(request: HttpRequest, event_id: uuid.UUID) -> HttpResponse:
    """GET /consent/recus/<id>.jws: the signed receipt of one of the resident's own events."""
    event = api_selectors.event_of_user(user=request_user(request), event_id=event_id)
    if event is None:
        raise Http404
    return _receipt_response(event)
