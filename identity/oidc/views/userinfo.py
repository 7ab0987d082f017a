"""UserInfo endpoint (OpenID Connect Core 1.0 §5.3), by GET and POST."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.utils.decorators import method_decorator
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.views import UserInfoView as DotUserInfoView


@method_decorator(csrf_exempt, name="dispatch")
class UserInfoView(DotUserInfoView):
    http_method_names = ["get", "post", "options"]

    def _create_userinfo_response(self, request: HttpRequest) -> HttpResponse:
        response = super()._create_userinfo_response(request)
        response["Cache-Control"] = "no-store"
        return response
