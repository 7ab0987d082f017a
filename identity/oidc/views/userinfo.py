"""UserInfo endpoint (OpenID Connect Core 1.0 §5.3), by GET and POST.

The access token is accepted in the Authorization header (RFC 6750 §2.1) and, on POST,
as a form-encoded body parameter (§2.2; OIDC certification `oidcc-userinfo-post-body`),
never in the URI query string (§2.3; RFC 9700 §4.3.2). django-oauth-toolkit enforces
COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT only in `verify_request`, which the userinfo
path does not go through, so the query-string refusal is done here.
"""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.views import UserInfoView as DotUserInfoView

from identity.oidc.errors import json_error


@method_decorator(csrf_exempt, name="dispatch")
class UserInfoView(DotUserInfoView):
    http_method_names = ["get", "post", "options"]

    def _create_userinfo_response(self, request: HttpRequest) -> HttpResponse:
        if "access_token" in request.GET:
            description = "Access tokens are not accepted in the URI query string."
            return json_error(
                "invalid_request",
                description,
                400,  # RFC 6750 §3.1: invalid_request is a 400
                {"WWW-Authenticate": f'Bearer error="invalid_request", error_description="{description}"'},
            )
        response = super()._create_userinfo_response(request)
        response["Cache-Control"] = "no-store"
        return response
