"""`{% franceconnect_login_button %}` (sign-in page) and `{% franceconnect_account_section %}`
(account page): the FranceConnect pieces of identity's templates, kept in this app."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from identity.franceconnect import selectors

register = template.Library()


@register.inclusion_tag("franceconnect/_login_button.html", takes_context=True)
def franceconnect_login_button(context: template.Context) -> dict[str, Any]:
    return {
        "enabled": selectors.is_enabled(),
        "next": context.get("next") or "",
        "csrf_token": context.get("csrf_token"),
    }


@register.inclusion_tag("franceconnect/_account_section.html", takes_context=True)
def franceconnect_account_section(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    user = context.get("resident") or (request.user if request is not None else None)
    link = selectors.link_for_user(user) if user is not None else None
    return {
        "enabled": selectors.is_enabled(),
        "link": link,
        "has_password": bool(user is not None and user.is_authenticated and user.has_usable_password()),
        "csrf_token": context.get("csrf_token"),
    }


@register.simple_tag(takes_context=True)
def franceconnect_logout_url(context: template.Context) -> str:
    """Where a sign-out form should post: ours when the session also has a FranceConnect
    session to end, else the normal sign-out. `{% franceconnect_logout_url as url %}`."""

    request = context.get("request")
    return (selectors.logout_url_for(request) if request is not None else None) or reverse("identity:logout")
