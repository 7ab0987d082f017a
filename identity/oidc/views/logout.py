"""RP-Initiated Logout 1.0 (end_session_endpoint).

The spec requires both GET and POST from the relying party (§2). A relying party's POST
arrives cross-site and without our CSRF token, so CSRF protection cannot apply to it as
it does to the confirmation form we show ourselves: the view is exempt as a whole and
the confirmation (the only POST carrying `allow`) is checked explicitly.
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest, HttpResponse, QueryDict
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.decorators import method_decorator
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import csrf_exempt
from oauth2_provider.exceptions import InvalidOIDCClientError, OIDCError
from oauth2_provider.models import get_application_model
from oauth2_provider.views import RPInitiatedLogoutView


def _csrf_failure(request: HttpRequest) -> HttpResponse | None:
    return CsrfViewMiddleware(lambda _request: HttpResponse()).process_view(request, None, (), {})


@method_decorator([csrf_exempt, never_cache], name="dispatch")
class EndSessionView(RPInitiatedLogoutView):
    template_name = "oidc/logout_confirm.html"
    http_method_names = ["get", "post"]

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return self._logout_request(request.GET, **kwargs)

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if "allow" in request.POST:
            # The resident's answer on our confirmation page: CSRF-protected.
            failure = _csrf_failure(request)
            if failure is not None:
                return failure
            return super().post(request, *args, **kwargs)
        # A logout request the relying party sent by POST (RP-Initiated Logout §2).
        return self._logout_request(request.POST, **kwargs)

    def get_request_application(self, id_token: Any, client_id: str | None) -> Any:
        # django-oauth-toolkit lets an unknown client_id raise DoesNotExist (a 500).
        if client_id:
            application = get_application_model().objects.filter(client_id=client_id).first()
            if application is None:
                raise InvalidOIDCClientError()
            return application
        return id_token.application if id_token else None

    def _logout_request(self, params: QueryDict, **kwargs: Any) -> HttpResponse:
        # django-oauth-toolkit's get(), reading from the given parameters (GET or POST).
        id_token_hint = params.get("id_token_hint")
        client_id = params.get("client_id")
        post_logout_redirect_uri = params.get("post_logout_redirect_uri")
        state = params.get("state")
        try:
            application, token_user = self.validate_logout_request(
                id_token_hint=id_token_hint,
                client_id=client_id,
                post_logout_redirect_uri=post_logout_redirect_uri,
            )
        except OIDCError as error:
            return self.error_response(error)

        if not self.must_prompt(token_user):
            return self.do_logout(application, post_logout_redirect_uri, state, token_user)

        self.oidc_data = {
            "id_token_hint": id_token_hint,
            "client_id": client_id,
            "post_logout_redirect_uri": post_logout_redirect_uri,
            "state": state,
        }
        # FormView would bind the form to request.POST on a POST; the confirmation page
        # must start unbound, with the RP's parameters as initial values.
        form = self.form_class(initial=self.get_initial(), prefix=self.get_prefix())
        context: dict[str, Any] = {**kwargs, "form": form}
        if application:
            context["application"] = application
        return self.render_to_response(self.get_context_data(**context))
