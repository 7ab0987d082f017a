"""The DPO console's navigation: consent's own pages, then those other apps add.

The console (consent/dpo/) lives below the apps that hold personalisation data, so it cannot
link their pages by importing them. An app with a page for the DPO registers it from its
`AppConfig.ready()`:

    navigation.register_page(navigation.DpoPage(
        url_name="profiles-dpo:inference", label=_("Personnalisation"), order=60,
    ))

The page itself is the app's view (gated with `consent.dpo.access.dpo_required`) and may
extend `consent/dpo/_base.html`, whose navigation lists the registered pages after the
console's own (`{% dpo_pages %}`, consent/templatetags/dpo_console.py).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from django.utils.functional import Promise


@dataclass(frozen=True)
class DpoPage:
    url_name: str  # reversed when the navigation is drawn
    label: str | Promise  # gettext_lazy: drawn in the request's language
    order: int = 100


class NavigationError(ValueError):
    """A page whose URL name is already registered."""


_lock = threading.Lock()
_pages: dict[str, DpoPage] = {}


def register_page(page: DpoPage) -> None:
    global _pages
    with _lock:
        if page.url_name in _pages:
            raise NavigationError(f"DPO page {page.url_name!r} is already registered")
        _pages = {**_pages, page.url_name: page}


def unregister_page(url_name: str) -> None:
    """Tests only; a no-op when absent."""
    global _pages
    with _lock:
        _pages = {key: value for key, value in _pages.items() if key != url_name}


def pages() -> list[DpoPage]:
    return sorted(_pages.values(), key=lambda page: (page.order, page.url_name))
