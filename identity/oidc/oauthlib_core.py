"""django-oauth-toolkit's bridge to oauthlib, handing oauthlib only the headers it reads.

django-oauth-toolkit passes oauthlib a copy of the whole WSGI environment as "headers",
which oauthlib then copies again into a case-insensitive dict, key by key: a third of
the CPU of a client-credentials grant. oauthlib and our validator read only these:
the Authorization header (client authentication, Basic), Content-Type, Origin (CORS on
the token endpoint), Host, the client address, and django-oauth-toolkit's own marker of
a secure request; plus the thumbprint of a DPoP proof the token view verified.
"""

from __future__ import annotations

from typing import Any

from oauth2_provider.oauth2_backends import OAuthLibCore as DotOAuthLibCore
from oauthlib.common import Request as OAuthRequest

from identity.oidc.dpop import JKT_HEADER, JKT_META

_KEPT = ("HTTP_AUTHORIZATION", "CONTENT_TYPE", "HTTP_ORIGIN", "HTTP_HOST", "REMOTE_ADDR")


class OAuthLibCore(DotOAuthLibCore):
    def extract_headers(self, request: Any) -> dict[str, str]:
        meta = request.META
        headers = {name: meta[name] for name in _KEPT if name in meta}
        if "HTTP_AUTHORIZATION" in headers:
            headers["Authorization"] = headers["HTTP_AUTHORIZATION"]
        if "CONTENT_TYPE" in headers:
            headers["Content-Type"] = headers["CONTENT_TYPE"]
        if "HTTP_ORIGIN" in headers:
            headers["Origin"] = headers["HTTP_ORIGIN"]
        if request.is_secure():
            headers["X_DJANGO_OAUTH_TOOLKIT_SECURE"] = "1"
        if JKT_META in meta:  # the DPoP key the token view verified (identity/oidc/dpop.py)
            headers[JKT_HEADER] = meta[JKT_META]
        return headers

    def oauth_request(self, request: Any) -> OAuthRequest:
        """oauthlib's view of this Django request, as django-oauth-toolkit builds it internally
        (the views that authenticate a client themselves: PAR, introspection)."""
        uri, http_method, body, headers = self._extract_params(request)
        return OAuthRequest(uri, http_method, body, headers)
