"""RFC 7807 problems of the consent APIs: a stable `type` URN and `code`, a translated title."""

from __future__ import annotations

from typing import Any

from django.http import JsonResponse

from common.problems import problem


def api_problem(status: int, code: str, title: str, detail: str = "", **extra: Any) -> JsonResponse:
    return problem(status, str(title), str(detail), type_=f"urn:cum:problem:{code}", code=code, **extra)
