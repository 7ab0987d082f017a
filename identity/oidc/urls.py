from django.urls import path

from identity.oidc import internal_notice
from identity.oidc.cors import client_named_in_body, client_of_access_token, with_cors
from identity.oidc.errors import readable_form
from identity.oidc.views import (
    account_services,
    authorize,
    discovery,
    introspect,
    jwks,
    logout,
    par,
    revoke,
    token,
    userinfo,
)

app_name = "oidc"

urlpatterns = [
    path(".well-known/openid-configuration", discovery.openid_configuration, name="discovery"),
    path(".well-known/oauth-authorization-server", discovery.oauth_authorization_server, name="as-metadata"),
    path("jwks.json", jwks.jwks, name="jwks"),
    path("authorize", authorize.AuthorizeView.as_view(), name="authorize"),
    path("authorize/decision", authorize.AuthorizeDecisionView.as_view(), name="authorize-decision"),
    path("authorize/information", internal_notice.InternalNoticeView.as_view(), name="authorize-notice"),
    # readable_form: a body Django cannot parse gets the protocol's invalid_request (errors.py).
    path("par", readable_form(par.PushedAuthorizationView.as_view()), name="par"),
    # CORS for single-page apps (identity/oidc/cors.py); introspection stays server-to-server.
    path(
        "token",
        readable_form(
            with_cors(
                token.TokenView.as_view(),
                methods="POST",
                client_of=client_named_in_body,
                refuse_foreign_origin=True,
            )
        ),
        name="token",
    ),
    path(
        "userinfo",
        with_cors(userinfo.UserInfoView.as_view(), methods="GET, POST", client_of=client_of_access_token),
        name="userinfo",
    ),
    path(
        "revoke",
        readable_form(
            with_cors(
                revoke.RevokeTokenView.as_view(),
                methods="POST",
                client_of=client_named_in_body,
                refuse_foreign_origin=True,
            )
        ),
        name="revoke",
    ),
    path("introspect", readable_form(introspect.IntrospectView.as_view()), name="introspect"),
    path("end-session", logout.EndSessionView.as_view(), name="end-session"),
    # Mon compte, "Services connectés" (a resident's page: French URLs, as identity/urls.py).
    path("compte/services/", account_services.services_page, name="account-services"),
    path(
        "compte/services/<str:client_id>/retirer/",
        account_services.service_withdraw,
        name="account-service-withdraw",
    ),
]
