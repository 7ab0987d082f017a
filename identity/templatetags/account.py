"""`{% account_nav %}`: the navigation between the sections of Mon compte
(identity.account_sections), on every page of the account."""

from __future__ import annotations

from typing import Any

from django import template
from django.urls import reverse

from identity.account_sections import sections

register = template.Library()


@register.inclusion_tag("identity/_account_nav.html", takes_context=True)
def account_nav(context: template.Context) -> dict[str, Any]:
    request = context.get("request")
    path = request.path if request is not None else ""
    items = []
    for section in sections():
        url = reverse(section.url_name)
        # The summary page is current only on itself; a section also on its sub-pages.
        current = path == url if section.key == "summary" else path.startswith(url)
        items.append({"title": section.title, "url": url, "current": current})
    return {"items": items}
