"""The profiles REST API (/profiles/api/v1/): thin views over profiles.services and
profiles.selectors. Errors are RFC 7807 problems (consent.api.problems); every answer is
`Cache-Control: no-store` (the taxonomy excepted: public, the same for everyone).

Resident (session cookie + CSRF token on writes, DRF's SessionAuthentication):
- GET/PATCH  me/profile                        the declared profile
- GET/DELETE me/interests                      inferred interests; forget them all
- DELETE     me/interests/<theme>              forget one
- POST/DELETE me/interests/<theme>/not-interested   the resident's correction, or its undoing
Public: GET themes (the taxonomy, communes and closed lists).
Partners (docs/partners.md, "Personalisation"):
- POST page-views       from a partner page (client_id + Origin + browser_id + browser_secret,
                        CORS) or from a partner back-end (a resident's Bearer access token)
- GET  personalisation  a partner back-end with a resident's Bearer access token
- POST personalisation  a partner page for a browser (CORS): inferred interests only
"""

from __future__ import annotations

import logging
import math
from typing import Any

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.utils import timezone, translation
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from common import ratelimit
from common.json_input import JSONParser
from common.openapi import problem_responses, retry_after_header
from consent.api import cors
from consent.api.partner_page import PartnerPageAPIView, rate_limited
from consent.api.problems import api_problem, browser_secret_problem, json_object_body, origin_problem
from consent.api.selectors import client_by_client_id
from consent.purpose_data import DataSubject
from consent.services import ConsentError, browser_id_hash, browser_secret_check
from identity.request_user import request_user
from profiles import selectors, services, taxonomy
from profiles.api import serializers as s
from profiles.api.auth import PartnerTokenAuthentication
from profiles.partner_tokens import PartnerToken

logger = logging.getLogger(__name__)

RESIDENT_MAX_BODY_BYTES = 8 * 1024
PARTNER_MAX_BODY_BYTES = 4 * 1024
TAGS = ["Profiles"]
PARTNER_TAGS = ["Personalisation (partners)"]
# What the partner endpoints' problems mean (docs/partners.md, "Personalisation" › Errors).
PARTNER_PROBLEMS = {
    400: "`validation_failed` (`errors` per field), `missing_client_id`, `unknown_client`, "
    "`client_id_mismatch`, `invalid_json`, `invalid_request` (an access token in the address)",
    401: "`invalid_token`: the Bearer token is malformed, expired, revoked, a client's own or for "
    "another resource (no token at all on GET personalisation: `about:blank`); `WWW-Authenticate: Bearer`",
    403: "`purpose_not_granted` (`purposes` names it; nothing stored), `origin_not_allowed`, "
    "`browser_secret_invalid`, `client_mismatch` (the body names another client than the token's)",
}
CLIENT_ID_PARAMETER = OpenApiParameter(
    "client_id",
    OpenApiTypes.STR,
    OpenApiParameter.QUERY,
    description="From a page: the partner's client_id, here so that the CORS preflight can be "
    "answered; if the body has one too, they must be the same (else 400).",
)
ORIGIN_PAGE = OpenApiParameter(
    "Origin",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    description="From a page (set by the browser): an origin registered on the client "
    "(`allowed_origins`), else 403 `origin_not_allowed`. Not used with a Bearer token.",
)
ORIGIN_REQUIRED = OpenApiParameter(
    "Origin",
    OpenApiTypes.STR,
    OpenApiParameter.HEADER,
    required=True,
    description="Set by the browser: an origin registered on the client (`allowed_origins`), else 403 "
    "`origin_not_allowed`.",
)
BROWSER_FIELDS = frozenset({"client_id", "browser_id", "browser_secret"})
PAGE_VIEW_FIELDS = frozenset({"site", "themes", "viewed_at"})


def _language() -> str:
    return "en" if (translation.get_language() or "fr").startswith("en") else "fr"


# --- problems -------------------------------------------------------------------------------------


def validation_problem(errors: dict[str, str]) -> JsonResponse:
    return api_problem(
        400, "validation_failed", _("Requête invalide"), _("Certaines valeurs sont refusées."), errors=errors
    )


def purpose_problem(exc: services.PurposeNotGranted) -> JsonResponse:
    errors = {name: taxonomy.FIELD_PURPOSES[name] for name in exc.fields}
    extra: dict[str, Any] = {"purposes": exc.purposes}
    if errors:
        extra["errors"] = errors
    return api_problem(
        403,
        "purpose_not_granted",
        _("Consentement nécessaire"),
        _("Ces données ne sont gardées et utilisées qu'avec votre consentement : %(purposes)s.")
        % {"purposes": ", ".join(exc.purposes)},
        **extra,
    )


def _unknown_fields(body: dict[str, Any], allowed: frozenset[str]) -> JsonResponse | None:
    unknown = sorted(str(name)[:64] for name in body if name not in allowed)
    if unknown:
        return validation_problem(dict.fromkeys(unknown, "unknown field"))
    return None


# --- resident ---------------------------------------------------------------------------------


class ResidentAPIView(APIView):
    """The signed-in resident's own data: session cookie, CSRF token on writes (DRF default)."""

    permission_classes = [IsAuthenticated]
    renderer_classes = [JSONRenderer]
    # PATCH reads its body with json_object_body (413, 415, 400); the parser only serves the
    # CSRF check of a POST, which reads the form fields of a JSON body as none.
    parser_classes = [JSONParser]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().finalize_response(request, response, *args, **kwargs)
        response["Cache-Control"] = "no-store"
        return response


def declared_answer(user: Any) -> dict[str, Any]:
    view = selectors.declared_view(user=user)
    return {
        "fields": {
            name: {"value": value, "purpose": view.purpose_of(name), "granted": view.field_granted(name)}
            for name, value in view.values.items()
        },
        "taxonomy_version": taxonomy.taxonomy().version,
        "updated_at": view.updated_at.isoformat() if view.updated_at else None,
    }


class DeclaredProfileView(ResidentAPIView):
    @extend_schema(
        tags=TAGS,
        operation_id="profiles_profile_read",
        summary="The resident's declared profile",
        responses={200: s.DeclaredProfileSerializer, **problem_responses(403)},
    )
    def get(self, request: Request) -> HttpResponse:
        return JsonResponse(declared_answer(request_user(request)))

    @extend_schema(
        tags=TAGS,
        operation_id="profiles_profile_update",
        summary="Change some declared fields",
        description="A partial update. Each field is accepted only while its purpose is granted "
        "(403 `purpose_not_granted`, `errors`: field → purpose, nothing written); unknown fields, "
        "communes, quartiers, themes and codes are refused (400 `validation_failed`, `errors` per field).",
        request=s.DeclaredPatchSerializer,
        responses={200: s.DeclaredProfileSerializer, **problem_responses(400, 403, 413, 415)},
    )
    def patch(self, request: Request) -> HttpResponse:
        body = json_object_body(request._request, max_bytes=RESIDENT_MAX_BODY_BYTES)
        if isinstance(body, JsonResponse):
            return body
        user = request_user(request)
        try:
            services.declared_update(user=user, changes=body)
        except services.ProfileInputError as exc:
            return validation_problem(exc.errors)
        except services.PurposeNotGranted as exc:
            return purpose_problem(exc)
        return JsonResponse(declared_answer(user))


def interests_answer(user: Any) -> dict[str, Any]:
    subject = services.subject_of(user)
    language = _language()
    return {
        "purpose_granted": selectors.browsing_granted(subject),
        "half_life_days": selectors.half_life_days(),
        "interests": [
            {
                "theme": view.theme.code,
                "label": view.theme.label,
                "weight": round(view.weight, 3),
                "views": view.views,
                "first_seen_at": view.first_seen_at.isoformat(),
                "last_seen_at": view.last_seen_at.isoformat(),
                "sources": [
                    {
                        "site": source.site,
                        "views": source.views,
                        "first": source.first.isoformat(),
                        "last": source.last.isoformat(),
                    }
                    for source in view.sources
                ],
            }
            for view in selectors.interests_view(subject=subject, language=language)
        ],
        "corrections": [
            {"theme": theme.code, "label": theme.label}
            for theme in selectors.corrections_view(subject=subject, language=language)
        ],
    }


class InterestsView(ResidentAPIView):
    @extend_schema(
        tags=TAGS,
        operation_id="profiles_interests_list",
        summary="The resident's inferred interests, why, and their corrections",
        responses={200: s.InterestsSerializer, **problem_responses(403)},
    )
    def get(self, request: Request) -> HttpResponse:
        return JsonResponse(interests_answer(request_user(request)))

    @extend_schema(
        tags=TAGS,
        operation_id="profiles_interests_delete_all",
        summary="Forget every inferred interest (corrections stay)",
        responses={204: None, **problem_responses(403)},
    )
    def delete(self, request: Request) -> HttpResponse:
        services.interests_delete_all(subject=services.subject_of(request_user(request)))
        return HttpResponse(status=204)


class InterestView(ResidentAPIView):
    @extend_schema(
        tags=TAGS,
        operation_id="profiles_interest_delete",
        summary="Forget one inferred interest",
        responses={204: None, **problem_responses(400, 403)},
    )
    def delete(self, request: Request, theme: str) -> HttpResponse:
        try:
            services.interest_delete(subject=services.subject_of(request_user(request)), theme=theme)
        except services.ProfileInputError as exc:
            return validation_problem(exc.errors)
        return HttpResponse(status=204)


class NotInterestedView(ResidentAPIView):
    @extend_schema(
        tags=TAGS,
        operation_id="profiles_interest_not_interested",
        request=None,
        summary='"Not interested": the theme leaves the inferred interests and stays out',
        responses={204: None, **problem_responses(400, 403)},
    )
    def post(self, request: Request, theme: str) -> HttpResponse:
        try:
            services.interest_correct(subject=services.subject_of(request_user(request)), theme=theme)
        except services.ProfileInputError as exc:
            return validation_problem(exc.errors)
        except services.PurposeNotGranted as exc:
            return purpose_problem(exc)
        return HttpResponse(status=204)

    @extend_schema(
        tags=TAGS,
        operation_id="profiles_interest_not_interested_undo",
        summary='Undo "not interested"',
        responses={204: None, **problem_responses(400, 403)},
    )
    def delete(self, request: Request, theme: str) -> HttpResponse:
        try:
            services.interest_correction_remove(
                subject=services.subject_of(request_user(request)), theme=theme
            )
        except services.ProfileInputError as exc:
            return validation_problem(exc.errors)
        return HttpResponse(status=204)


# --- public taxonomy --------------------------------------------------------------------------------


def _labels(label: Any) -> dict[str, str]:
    with translation.override("fr"):
        fr = str(label)
    with translation.override("en"):
        en = str(label)
    return {"fr": fr, "en": en}


def taxonomy_answer() -> dict[str, Any]:
    current = taxonomy.taxonomy()
    return {
        "version": current.version,
        "published": current.published,
        "themes": [{"code": theme.code, "fr": theme.fr, "en": theme.en} for theme in current.themes],
        "communes": [
            {
                "insee_code": commune.insee_code,
                "name": commune.name,
                "quartiers": [
                    {"code": q.code, "name": q.name} for q in taxonomy.quartiers_of(commune.insee_code)
                ],
            }
            for commune in taxonomy.all_communes()
        ],
        "accessibility": [{"code": code, **_labels(label)} for code, label in taxonomy.ACCESSIBILITY.items()],
        "notification_frequencies": [
            {"code": code, **_labels(label)} for code, label in taxonomy.NOTIFICATION_FREQUENCIES.items()
        ],
        "languages": [
            {"code": code, "fr": label, "en": label} for code, label in taxonomy.PORTAL_LANGUAGES.items()
        ],
    }


class ThemesView(APIView):
    authentication_classes: list[Any] = []
    permission_classes = [AllowAny]
    renderer_classes = [JSONRenderer]

    @extend_schema(
        tags=TAGS,
        operation_id="profiles_taxonomy",
        summary="The themes (versioned), communes and quartiers, and the closed lists (public)",
        responses={200: s.TaxonomySerializer},
    )
    def get(self, request: Request) -> HttpResponse:
        response = JsonResponse(taxonomy_answer())
        response["Cache-Control"] = "public, max-age=3600"
        return response


# --- partners ---------------------------------------------------------------------------------------


def _client_problem(code: str, detail: str, field_error: str) -> JsonResponse:
    return api_problem(400, code, _("Requête invalide"), detail, errors={"client_id": field_error})


def _too_many(retry_after: int) -> JsonResponse:
    return rate_limited(
        retry_after, _("Trop de pages vues envoyées depuis cette adresse. Réessayez plus tard.")
    )


class PartnerAPIView(PartnerPageAPIView):
    """Partner pages (anonymous, cross-origin, CORS per client) and partner back-ends (a
    resident's Bearer access token, no CORS)."""

    # The shared part (CORS, no-store, the preflight) is consent.api.partner_page's.

    authentication_classes = [PartnerTokenAuthentication]

    def cors_applies(self, request: Request) -> bool:
        # CORS for the page variant only: a partner back-end sends a token and no Origin.
        return super().cors_applies(request) and not self._bearer(request)

    @staticmethod
    def _bearer(request: Request) -> bool:
        return "HTTP_AUTHORIZATION" in request.META

    def browser_subject(self, request: Request, body: dict[str, Any]) -> DataSubject | JsonResponse:
        """The browser a partner page speaks for, proved like cookie choices: a registered
        client (in the address and/or the body, the same), the page's Origin registered on
        it, the widget's browser_id and its browser_secret."""
        query_client_id = request.query_params.get("client_id")
        client_id = body.get("client_id") or query_client_id
        if not client_id:
            return _client_problem("missing_client_id", _("client_id est obligatoire."), "required")
        if query_client_id and body.get("client_id") and query_client_id != body["client_id"]:
            return _client_problem(
                "client_id_mismatch", _("Le client_id de l'adresse et celui du corps diffèrent."), "mismatch"
            )
        client = client_by_client_id(client_id)
        if client is None:
            return _client_problem(
                "unknown_client", _("Aucun service partenaire n'est enregistré sous ce client_id."), "unknown"
            )
        self.cors_client = client
        if not cors.origin_allowed(client, self.origin):
            return origin_problem()
        browser_id = body.get("browser_id")
        try:
            if not isinstance(browser_id, str):
                raise ConsentError("browser_id is required")
            browser_id_hash(browser_id)
        except ConsentError:
            return validation_problem({"browser_id": "required: the widget's browser id"})
        # Ownership of the browser is proved exactly as for cookie choices: its secret.
        if browser_secret_check(browser_id=browser_id, browser_secret=body.get("browser_secret")) is not True:
            return browser_secret_problem()
        # A browser attached to an account with its proof speaks for that account.
        return services.subject_of_browser(browser_id)


def _partner_token(request: Request) -> PartnerToken | None:
    auth = request.auth
    return auth if isinstance(auth, PartnerToken) else None


def _throttle_key(request: Request, token: PartnerToken | None) -> tuple[str, str, int]:
    """(counter kind, counted value, limit): a page's events per client address, a partner
    back-end's per partner (its one address carries every resident's events)."""
    limits = settings.PROFILES_PAGE_VIEW_RATE_LIMIT
    if token is not None:
        return "profiles-page-view-client", token.client_id, int(limits["per_client"])
    return (
        "profiles-page-view-ip",
        ratelimit.ip_bucket(ratelimit.client_ip(request._request)),
        int(limits["per_ip"]),
    )


class PageViewsView(PartnerAPIView):
    @extend_schema(
        tags=PARTNER_TAGS,
        operation_id="profiles_page_view_record",
        summary="Record one page view (themes of the page, site, time)",
        description="From a partner page: `client_id` (also in the address, for the CORS preflight), "
        "`browser_id` and `browser_secret` of the cookie widget, the page's `Origin` registered on the "
        "client. From a partner back-end: `Authorization: Bearer <the resident's access token>` and no "
        "browser fields. Accepted only while `personalisation-browsing` is granted for that browser or "
        "resident; otherwise 403 `purpose_not_granted` and nothing is stored, not even a counter.",
        parameters=[CLIENT_ID_PARAMETER, ORIGIN_PAGE, retry_after_header(429)],
        request=s.PageViewSerializer,
        responses={
            202: s.PageViewAcceptedSerializer,
            **problem_responses(400, 401, 403, 413, 415, 429, descriptions=PARTNER_PROBLEMS),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        body = json_object_body(request._request, max_bytes=PARTNER_MAX_BODY_BYTES)
        if isinstance(body, JsonResponse):
            return body
        token = _partner_token(request)
        subject = self._subject(request, body, token)
        if isinstance(subject, JsonResponse):
            return subject
        # Consent first: without it nothing is stored, not even a rate-limit counter.
        if not selectors.browsing_granted(subject):
            return purpose_problem(services.PurposeNotGranted([taxonomy.BROWSING_PURPOSE]))
        kind, value, limit = _throttle_key(request, token)
        window = int(settings.PROFILES_PAGE_VIEW_RATE_LIMIT["window_seconds"])
        if ratelimit.count(kind, value, window) >= limit:
            return _too_many(max(1, math.ceil(ratelimit.window(window)[1])))
        viewed_at = body.get("viewed_at")
        if viewed_at is None:
            viewed_at = timezone.now()
        elif isinstance(viewed_at, str):
            viewed_at = _parse_datetime(viewed_at)
        try:
            counted = services.page_view_record(
                subject=subject, site=body.get("site"), themes=body.get("themes"), viewed_at=viewed_at
            )
        except services.ProfileInputError as exc:
            return validation_problem(exc.errors)
        except services.PurposeNotGranted as exc:
            return purpose_problem(exc)
        ratelimit.hit(kind, value, window)
        logger.info(
            "page view accepted client=%s via=%s themes=%d",
            token.client_id if token else (self.cors_client.client_id if self.cors_client else "?"),
            "token" if token else "page",
            len(counted),
        )
        return JsonResponse({"counted": counted}, status=202)

    def _subject(
        self, request: Request, body: dict[str, Any], token: PartnerToken | None
    ) -> DataSubject | JsonResponse:
        if token is None:
            unknown = _unknown_fields(body, BROWSER_FIELDS | PAGE_VIEW_FIELDS)
            return unknown if unknown is not None else self.browser_subject(request, body)
        unknown = _unknown_fields(body, PAGE_VIEW_FIELDS | {"client_id"})
        if unknown is not None:
            return unknown
        if body.get("client_id") not in (None, token.client_id):
            return api_problem(
                403,
                "client_mismatch",
                _("Jeton d'un autre service"),
                "This access token was issued to another client.",
            )
        return DataSubject(user_id=token.user.pk)


def _parse_datetime(value: str) -> Any:
    try:
        return parse_datetime(value) or value
    except ValueError:
        return value  # the service refuses it with its message


class PersonalisationView(PartnerAPIView):
    def get_authenticators(self) -> list[Any]:
        # The page variant (POST) proves a browser; only the back-end variant (GET) a token.
        if getattr(self, "request", None) is not None and self.request.method == "GET":
            return super().get_authenticators()
        return []

    def get_permissions(self) -> list[Any]:
        if getattr(self, "request", None) is not None and self.request.method == "GET":
            return [IsAuthenticated()]
        return [AllowAny()]

    @extend_schema(
        tags=PARTNER_TAGS,
        operation_id="profiles_personalisation_resident",
        summary="What a partner back-end may use for this resident now, with the reason for each item",
        description="`Authorization: Bearer <the resident's access token issued to this partner>`. "
        "The token's scopes decide: `territory` → commune and quartier, `interests` → themes "
        "(declared and inferred), `accessibility` → accessibility preferences; each only while the "
        "resident's sharing consent for this partner and the purpose the data is kept under are "
        "both granted (the rule of userinfo).",
        responses={
            200: s.PersonalisationSerializer,
            **problem_responses(400, 401, descriptions=PARTNER_PROBLEMS),
        },
    )
    def get(self, request: Request) -> HttpResponse:
        token = _partner_token(request)
        assert token is not None  # IsAuthenticated: PartnerTokenAuthentication found one
        answer = selectors.partner_personalisation(
            subject=DataSubject(user_id=token.user.pk),
            release=token.release,
            sharing_purpose=token.sharing_purpose,
            language=_language(),
        )
        return JsonResponse({"subject": "resident", "language": _language(), **answer})

    @extend_schema(
        tags=PARTNER_TAGS,
        operation_id="profiles_personalisation_browser",
        summary="What a partner page may use for this browser now: inferred interests only",
        parameters=[CLIENT_ID_PARAMETER, ORIGIN_REQUIRED],
        request=s.BrowserProofSerializer,
        responses={
            200: s.PersonalisationSerializer,
            **problem_responses(400, 403, 413, 415, descriptions=PARTNER_PROBLEMS),
        },
    )
    def post(self, request: Request) -> HttpResponse:
        body = json_object_body(request._request, max_bytes=PARTNER_MAX_BODY_BYTES)
        if isinstance(body, JsonResponse):
            return body
        unknown = _unknown_fields(body, BROWSER_FIELDS)
        if unknown is not None:
            return unknown
        subject = self.browser_subject(request, body)
        if isinstance(subject, JsonResponse):
            return subject
        answer = selectors.browser_personalisation(subject=subject, language=_language())
        return JsonResponse({"subject": "browser", "language": _language(), **answer})
