"""Which client authenticated a request (after oauthlib's authenticate_client succeeded)."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import unquote_plus

from django.http import HttpRequest
from oauth2_provider.models import get_application_model


def presented_client_id(request: HttpRequest) -> str | None:
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Basic "):
        try:
            decoded = base64.b64decode(auth[6:], validate=True).decode("utf-8")
        except (binascii.Error, UnicodeDecodeError):
            return None
        client_id, sep, _secret = decoded.partition(":")
        return unquote_plus(client_id) if sep else None
    return request.POST.get("client_id")


def client_from_request(request: HttpRequest) -> Any | None:
    client_id = presented_client_id(request)
    if not client_id:
        return None
    return get_application_model().objects.filter(client_id=client_id).first()
