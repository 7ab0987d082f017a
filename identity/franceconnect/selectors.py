"""Reads of the FranceConnect app."""

from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from identity.franceconnect.models import FranceConnectLink
from identity.franceconnect.services import SESSION_FC
from identity.models import User


def is_enabled() -> bool:
    return bool(settings.FRANCECONNECT_ENABLED)


def link_for_sub(sub: str) -> FranceConnectLink | None:
    return FranceConnectLink.objects.select_related("user").filter(sub=sub).first()


def link_for_user(user: User) -> FranceConnectLink | None:
    if user is None or not user.is_authenticated:
        return None
    return FranceConnectLink.objects.filter(user=user).first()


def session_id_token(request: HttpRequest) -> str:
    """The FranceConnect ID token of this browser session, if it has a FranceConnect session."""
    value = request.session.get(SESSION_FC)
    if isinstance(value, dict) and isinstance(value.get("id_token"), str):
        return value["id_token"]
    return ""


def logout_url_for(request: HttpRequest) -> str | None:
    """Where the sign-out button should post when this session also has a FranceConnect
    session to end (/franceconnect/deconnexion/), else None (use the normal sign-out).

    The view behind it signs out here first, then sends the browser to FranceConnect's
    end-session endpoint, which sends it back to /franceconnect/deconnexion/retour/.
    """
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not session_id_token(request):
        return None
    return reverse("identity:franceconnect:logout")
