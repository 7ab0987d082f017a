"""RFC 7807 problem details for our JSON APIs."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse
from rest_framework.response import Response
from rest_framework.views import exception_handler

PROBLEM_CONTENT_TYPE = "application/problem+json"


def problem(
    status: int, title: str, detail: str = "", type_: str = "about:blank", **extra: Any
) -> JsonResponse:
    body: dict[str, Any] = {"type": type_, "title": title, "status": status}
    if detail:
        body["detail"] = detail
    body.update(extra)
    return JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)


def drf_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    response = exception_handler(exc, context)
    if response is None:
        return None
    data = response.data
    detail = data.get("detail") if isinstance(data, dict) else None
    body: dict[str, Any] = {
        # A refusal that names its reason (identity.reauth: MFA or a recent sign-in required).
        "type": getattr(exc, "problem_type", "about:blank"),
        "title": getattr(exc, "default_detail", "Error"),
        "status": response.status_code,
    }
    if detail:
        body["detail"] = str(detail)
    elif data:
        body["errors"] = data
    body.update(getattr(exc, "problem_extra", {}))
    response.data = body
    response.content_type = PROBLEM_CONTENT_TYPE
    return response
