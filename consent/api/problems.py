"""RFC 7807 problems of the consent APIs: a stable `type` URN and `code`, a translated title."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, JsonResponse
from django.utils.translation import gettext as _

from common import json_input
from common.problems import problem


def api_problem(status: int, code: str, title: str, detail: str = "", **extra: Any) -> JsonResponse:
    return problem(status, str(title), str(detail), type_=f"urn:cum:problem:{code}", code=code, **extra)


def too_large(max_bytes: int) -> JsonResponse:
    return api_problem(413, "body_too_large", _("Requête trop volumineuse"), f"max {max_bytes} bytes")


def json_object_body(request: HttpRequest, *, max_bytes: int) -> dict[str, Any] | JsonResponse:
    """The JSON object of a small `application/json` body, or the problem to answer: 413
    (announced or actual size over `max_bytes`, checked before the body is read), 415
    (another content type), 400 (not UTF-8 JSON, or not an object)."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        length = 0
    if length > max_bytes:
        return too_large(max_bytes)
    content_type = (request.content_type or "").split(";")[0].strip().lower()
    if content_type != "application/json":
        return api_problem(
            415,
            "unsupported_media_type",
            _("Format non pris en charge"),
            "Content-Type: application/json",
        )
    raw = request.body
    if len(raw) > max_bytes:
        return too_large(max_bytes)
    try:
        body = json_input.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return api_problem(
            400, "invalid_json", _("Requête invalide"), _("Le corps n'est pas du JSON valide.")
        )
    if not isinstance(body, dict):
        return api_problem(400, "invalid_json", _("Requête invalide"), _("Le corps doit être un objet JSON."))
    return body


def origin_problem() -> JsonResponse:
    """403: the request's Origin is not registered on the partner client (partner-page APIs)."""
    return api_problem(
        403,
        "origin_not_allowed",
        _("Origine non autorisée"),
        _("Cette origine n'est pas enregistrée pour ce service partenaire."),
    )


def browser_secret_problem() -> JsonResponse:
    """403: the cookie widget's browser secret is missing or wrong (partner-page APIs)."""
    return api_problem(
        403,
        "browser_secret_invalid",
        _("Navigateur non reconnu"),
        _("Le secret de ce navigateur est absent ou faux."),
        errors={"browser_secret": "invalid"},
    )
