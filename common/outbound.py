"""Outbound HTTP to addresses a partner or an upstream configured: redirects are never followed.

A partner registers its JWKS URI, sector identifier URI and logout endpoints; each was
checked when registered (https, or loopback http in development). Following a 3xx would
let a partner (or whoever controls its server) send our requests to an address that was
never checked, e.g. a host inside our network. With this opener a redirect is an
`urllib.error.HTTPError` carrying its 3xx status, which callers treat as a failure.
"""

from __future__ import annotations

import urllib.request
from typing import Any


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def open_without_redirects(request: urllib.request.Request, *, timeout: float) -> Any:
    """Like urllib.request.urlopen(request, timeout=...), but a 3xx answer raises HTTPError."""
    return _opener.open(request, timeout=timeout)
