"""The sign-in form's page (GET /connexion/) from a per-language pre-rendered copy.

Rendering identity/login.html (the base template, its translations, the form's widgets
through the form renderer, the URL reversals) cost about 2 ms of CPU at every sign-in,
for a page that differs from one visitor to the next in four values only: the CSRF token,
the page's own path (the language switcher's `next`), the `next` the sign-in leads to,
and the registration link built from it.

So the page is rendered once per process, language and "with or without `next`", through
the same template and context, with a marker in place of each of those values. The result
is cut at the markers into literal pieces; a request joins the pieces with its own values,
escaped exactly as the template escapes them (`{{ next }}` HTML-escaped, `{{ next|urlencode }}`
URL-encoded then HTML-escaped). One pass: a value can never be taken for a marker.
tests/test_signin_page.py compares the result byte for byte with the full rendering.

Only the plain case takes this path (`prerendered_page`): an anonymous visitor, no message
waiting to be shown, no `login_hint`, the form unbound. Anything else (errors after a POST,
a signed-in visitor, messages, the FranceConnect linking page, which subclasses the view)
renders the template as before. The copies are dropped when a setting changes (tests) and
never kept with DEBUG on (templates edited while the server runs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.contrib.messages import get_messages
from django.core.signals import setting_changed
from django.http import HttpRequest, HttpResponse
from django.middleware.csrf import get_token
from django.template.defaultfilters import urlencode
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.translation import get_language

# Markers: letters and `<>` only, so HTML-escaping turns the `next` marker into one text in
# an attribute (`&lt;…&gt;`) and URL-encoding into another (`%3C…%3E`), and leaves the others
# as they are.
_CSRF = "cumSigninCsrfMarker"
_FULL_PATH = "cumSigninFullPathMarker"
_REGISTER_URL = "cumSigninRegisterUrlMarker"
_NEXT = "cumSigninNext<marker>"
_NEXT_HTML = escape(_NEXT)
_NEXT_URL = escape(urlencode(_NEXT))

_SLOTS = (_CSRF, _FULL_PATH, _REGISTER_URL, _NEXT_HTML, _NEXT_URL)


class _MarkerRequest:
    """What the base template reads of `request`, with the page's path as a marker."""

    def __init__(self, request: HttpRequest) -> None:
        self.resolver_match = request.resolver_match

    def get_full_path(self) -> str:
        return _FULL_PATH


Pieces = tuple[tuple[str, ...], tuple[str, ...]]  # literal pieces, and the marker after each

_pages: dict[tuple[str, bool], Pieces] = {}
_lock = threading.Lock()


def _cut(page: str) -> Pieces:
    literals: list[str] = []
    slots: list[str] = []
    position = 0
    while True:
        found = [(page.find(slot, position), slot) for slot in _SLOTS]
        found = [(index, slot) for index, slot in found if index >= 0]
        if not found:
            literals.append(page[position:])
            return tuple(literals), tuple(slots)
        index, slot = min(found)
        literals.append(page[position:index])
        slots.append(slot)
        position = index + len(slot)


def _pieces(
    *, template_name: str, context: Callable[[], dict[str, Any]], request: HttpRequest, with_next: bool
) -> Pieces:
    key = (get_language() or "", with_next)
    pieces = _pages.get(key)
    if pieces is None:
        marked = dict(context())
        marked["csrf_token"] = _CSRF
        marked["request"] = _MarkerRequest(request)
        marked["register_url"] = _REGISTER_URL
        marked["next"] = _NEXT if with_next else ""
        pieces = _cut(render_to_string(template_name, marked, request=request))
        if not settings.DEBUG:
            with _lock:
                _pages[key] = pieces
    return pieces


def eligible(request: HttpRequest, *, initial: dict[str, Any]) -> bool:
    """The plain case the pre-rendered page serves (module docstring)."""
    if request.method != "GET" or initial:
        return False
    if request.user.is_authenticated:
        return False
    # Counting the messages loads them without marking them shown.
    return len(get_messages(request)) == 0


def render(
    *,
    template_name: str,
    context: Callable[[], dict[str, Any]],
    request: HttpRequest,
    next_url: str,
    register_url: str,
) -> HttpResponse:
    """The page for this request: the pieces joined with its values (one pass). `context`
    gives the view's template context; it is only asked for when the page is rendered."""
    literals, slots = _pieces(
        template_name=template_name, context=context, request=request, with_next=bool(next_url)
    )
    values = {
        _CSRF: get_token(request),  # one token for every form of the page, as the template's
        _FULL_PATH: escape(request.get_full_path()),
        _REGISTER_URL: escape(register_url),
        _NEXT_HTML: escape(next_url),
        _NEXT_URL: escape(urlencode(next_url)),
    }
    parts = [literals[0]]
    for slot, literal in zip(slots, literals[1:], strict=True):
        parts.append(values[slot])
        parts.append(literal)
    return HttpResponse("".join(parts))


def _forget(**kwargs: Any) -> None:
    with _lock:
        _pages.clear()


setting_changed.connect(_forget, dispatch_uid="identity.signin_page.forget")
