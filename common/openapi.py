"""Shared pieces of the OpenAPI description (drf-spectacular) for every app's REST API.

- `ProblemSerializer`, the `Problem` component: the RFC 7807 body `common.problems` sends
  (`problem()`, `drf_exception_handler`, and the consent APIs' `api_problem`).
- `problem_responses(*codes)`: entries for `extend_schema(responses=…)` describing problem
  answers with the `application/problem+json` media type.
- `retry_after_header(*codes)`: the `Retry-After` header of a 429 or 503.
- `SessionCSRFScheme`: how DRF's `SessionAuthentication` really authenticates a request, the
  session cookie, plus the CSRF token header on unsafe methods (two security schemes, both
  required on writes). Defining the class registers it with drf-spectacular, so importing
  this module is enough (config/api_docs.py does, for the schema's views).

An app annotates its DRF views like this:

    @extend_schema(
        request=ThingInSerializer,
        responses={200: ThingSerializer, **problem_responses(400, 403, 404)},
    )
    def get(self, request): ...

drf-spectacular is a dependency of the site, not an app of ours: common may import it.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any

from django.conf import settings
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema_field
from rest_framework import serializers
from rest_framework.permissions import SAFE_METHODS

from common.problems import PROBLEM_CONTENT_TYPE

# Security scheme names (components.securitySchemes).
SESSION_SCHEME = "sessionCookie"
CSRF_SCHEME = "csrfToken"
# Django's default CSRF_HEADER_NAME (HTTP_X_CSRFTOKEN), which we keep.
CSRF_HEADER = "X-CSRFToken"

_PROBLEM_DESCRIPTIONS = {
    400: "Invalid request: `code` says what, `errors` names each faulty field",
    403: "Refused: not allowed (or, for a signed-in API, no session, no CSRF token, or not at "
    "the required level: `code` says which)",
    404: "Not found",
    405: "Method not allowed",
    406: "Not acceptable: this API answers JSON only",
    409: "Conflict with the current state",
    413: "Request body too large",
    415: "Unsupported media type: send `Content-Type: application/json`",
    429: "Too many requests from this address: retry after `Retry-After` seconds",
    503: "Temporarily unavailable: retry after `Retry-After` seconds",
}


@extend_schema_field(
    {
        "type": ["object", "array"],
        "description": "What is wrong, per field: an object mapping each field (`choices.<code>` "
        "for one choice) to a reason code or message(s); an array for a request body that "
        "was wrong as a whole.",
    }
)
class ProblemErrorsField(serializers.JSONField):
    pass


class ProblemSerializer(serializers.Serializer[Any]):
    """RFC 7807 problem details. Extension members (RFC 7807 §3.2) may follow, named in each
    operation's description: `positions`, `event_ids`, `problems` (an altered ledger),
    `reauthenticate` (where to sign in again), `hint`…"""

    type = serializers.CharField(
        help_text="A URI reference naming the problem type: `urn:cum:problem:<code>`, or "
        "`about:blank` when the HTTP status says it all."
    )
    title = serializers.CharField(help_text="A short summary, in the request's language (fr or en).")
    status = serializers.IntegerField(min_value=100, max_value=599, help_text="The HTTP status code.")
    detail = serializers.CharField(
        required=False, help_text="An explanation of this occurrence, for a human reader."
    )
    instance = serializers.CharField(
        required=False, help_text="A URI reference to this occurrence (RFC 7807; not sent today)."
    )
    code = serializers.CharField(
        required=False,
        help_text="The stable code of the problem type (the end of `type`), for programs to test.",
    )

    class Meta:
        ref_name = "Problem"

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        # `errors` is also the name of Serializer's validation-errors property: not a class attribute.
        fields = super().get_fields()
        fields["errors"] = ProblemErrorsField(required=False)
        return fields


def problem_responses(
    *codes: int, descriptions: Mapping[int, str] | None = None
) -> dict[tuple[int, str], OpenApiResponse]:
    """`extend_schema(responses=…)` entries: each status code answered with a `Problem`
    in `application/problem+json`. `descriptions` overrides the default text of a code."""
    described = {**_PROBLEM_DESCRIPTIONS, **(descriptions or {})}
    return {
        (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(
            response=ProblemSerializer,
            description=described.get(code) or HTTPStatus(code).phrase,
        )
        for code in codes
    }


def retry_after_header(*codes: int) -> OpenApiParameter:
    """The `Retry-After` response header (seconds) of the given status codes."""
    return OpenApiParameter(
        name="Retry-After",
        type=OpenApiTypes.INT,
        location=OpenApiParameter.HEADER,
        response=list(codes),
        description="Seconds to wait before trying again.",
    )


class SessionCSRFScheme(OpenApiAuthenticationExtension):
    """DRF's SessionAuthentication as it is: our session cookie (set by signing in on our
    pages), and on unsafe methods the CSRF token of our page in the `X-CSRFToken` header."""

    target_class = "rest_framework.authentication.SessionAuthentication"
    match_subclasses = True
    priority = 1  # over drf-spectacular's own `cookieAuth` (priority -1)
    name = [SESSION_SCHEME, CSRF_SCHEME]

    def get_security_requirement(self, auto_schema: Any) -> dict[str, list[Any]]:
        if auto_schema.method in SAFE_METHODS:
            return {SESSION_SCHEME: []}
        return {SESSION_SCHEME: [], CSRF_SCHEME: []}

    def get_security_definition(self, auto_schema: Any) -> list[dict[str, Any]]:
        return [
            {
                "type": "apiKey",
                "in": "cookie",
                "name": settings.SESSION_COOKIE_NAME,
                "description": "The session cookie of a browser signed in on our pages "
                "(`__Host-session` behind TLS). Some operations also require a staff group "
                "and a sign-in with two factors: see each operation.",
            },
            {
                "type": "apiKey",
                "in": "header",
                "name": CSRF_HEADER,
                "description": "The CSRF token of our page, required with the session cookie "
                "on POST, PUT, PATCH and DELETE (the CSRF cookie is HttpOnly).",
            },
        ]
