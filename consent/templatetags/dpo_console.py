"""`{% dpo_pages as pages %}`: the pages other apps added to the DPO console's navigation
(consent.dpo.navigation), each as {"url", "label"}, for templates/consent/dpo/_base.html."""

from __future__ import annotations

from django import template
from django.urls import NoReverseMatch, reverse

from consent.dpo import navigation

register = template.Library()


@register.simple_tag
def dpo_pages() -> list[dict[str, str]]:
    links = []
    for page in navigation.pages():
        try:
            url = reverse(page.url_name)
        except NoReverseMatch:  # the app's URLs are not installed (a partial configuration)
            continue
        links.append({"url": url, "label": str(page.label)})
    return links
