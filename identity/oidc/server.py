"""The oauthlib server we expose: authorization code (OIDC-aware), client credentials, refresh.

Implicit, hybrid, password and device grants are not offered at all (RFC 9700 §2.1.2,
§2.4), so no response type that returns tokens from the authorization endpoint exists.
No resource or userinfo endpoint either: userinfo and introspection check our JWT access
tokens themselves (identity/oidc/access_tokens.py).
"""

from __future__ import annotations

from typing import Any

from oauthlib.common import Request
from oauthlib.oauth2.rfc6749 import utils
from oauthlib.oauth2.rfc6749.endpoints import (
    AuthorizationEndpoint,
    IntrospectEndpoint,
    RevocationEndpoint,
    TokenEndpoint,
)
from oauthlib.oauth2.rfc6749.endpoints.base import catch_errors_and_unavailability
from oauthlib.oauth2.rfc6749.errors import UnsupportedGrantTypeError
from oauthlib.oauth2.rfc6749.grant_types import AuthorizationCodeGrant as OAuth2AuthorizationCodeGrant
from oauthlib.oauth2.rfc6749.grant_types import ClientCredentialsGrant
from oauthlib.oauth2.rfc6749.tokens import BearerToken
from oauthlib.openid.connect.core.grant_types import AuthorizationCodeGrant, RefreshTokenGrant
from oauthlib.openid.connect.core.grant_types.dispatchers import (
    AuthorizationCodeGrantDispatcher,
    AuthorizationTokenGrantDispatcher,
)


class _ParsedOnceRequest(Request):
    """oauthlib's request whose URL query is parsed once.

    oauthlib parses the query again each time `uri_query_params` is read: seven times while
    an authorization request is validated (`duplicate_params` for each of five parameters,
    then our `resource` and `dpop_jkt` validators). The URL does not change meanwhile. The
    parse keeps its strictness: a query it refuses raises its ValueError every time.
    """

    @property
    def uri_query_params(self) -> list[tuple[str, str]]:
        parsed = self.__dict__.get("_cum_query_params")
        if parsed is None or parsed[0] != self.uri:
            parsed = (self.uri, super().uri_query_params)
            self.__dict__["_cum_query_params"] = parsed
        return list(parsed[1])


class _DecodedParamsRequest(_ParsedOnceRequest):
    """oauthlib's request for parameters Django has already decoded (`Server.validate_authorization_params`).

    What `_ParsedOnceRequest(path + "?" + params.urlencode())` holds, without writing the query
    out and parsing it back: the same parameters in the same order (`_params` keeps the last
    value of a repeated one, `uri_query_params` lists them all, as oauthlib's parse of that
    query would), the same empty body and the same headers. Only `uri` differs: the path
    alone, which nothing in the authorization request's validation reads (oauthlib reads the
    query of a POST only, and this request is always a GET, as the URL one was).
    """

    def __init__(self, path: str, items: list[tuple[str, str]], headers: dict[str, str]) -> None:
        super().__init__(path, http_method="GET", body="", headers=headers)
        self.__dict__["_params"].update(items)  # oauthlib's own dict (the stubs do not declare it)
        self.__dict__["_cum_query_params"] = (self.uri, tuple(items))


class Server(
    AuthorizationEndpoint,
    IntrospectEndpoint,
    TokenEndpoint,
    RevocationEndpoint,
):
    def __init__(
        self,
        request_validator: Any,
        token_expires_in: Any = None,
        token_generator: Any = None,
        refresh_token_generator: Any = None,
        *args: Any,
        **kwargs: Any,
    ) -> None:
        # RFC 8707 `resource`, checked by our validator once oauthlib has checked the rest
        # (after client authentication at the token endpoint). Each grant gets its own lists:
        # the OpenID grant appends its own validator to the list it is given.
        # Then DPoP (RFC 9449): `dpop_jkt` of an authorization request, and the binding of
        # what a token request issues to the key whose proof the token view verified.
        def resource_checks() -> dict[str, list[Any]]:
            return {
                "post_auth": [
                    request_validator.validate_authorization_resource,
                    request_validator.validate_authorization_dpop_jkt,
                ],
                "post_token": token_checks(),
            }

        def token_checks() -> list[Any]:
            return [request_validator.validate_token_resource, request_validator.validate_token_dpop]

        self.auth_grant = OAuth2AuthorizationCodeGrant(request_validator, **resource_checks())
        self.openid_connect_auth = AuthorizationCodeGrant(request_validator, **resource_checks())
        self.credentials_grant = ClientCredentialsGrant(request_validator, post_token=token_checks())
        self.refresh_grant = RefreshTokenGrant(request_validator, post_token=token_checks())
        self.bearer = BearerToken(
            request_validator, token_generator, token_expires_in, refresh_token_generator
        )
        self.auth_grant_choice = AuthorizationCodeGrantDispatcher(
            default_grant=self.auth_grant, oidc_grant=self.openid_connect_auth
        )
        AuthorizationEndpoint.__init__(
            self,
            default_response_type="code",
            response_types={"code": self.auth_grant_choice},
            # oauthlib takes the token handler here (as its own servers do); types-oauthlib says str.
            default_token_type=self.bearer,  # type: ignore[arg-type]
        )
        self.token_grant_choice = AuthorizationTokenGrantDispatcher(
            request_validator, default_grant=self.auth_grant, oidc_grant=self.openid_connect_auth
        )
        TokenEndpoint.__init__(
            self,
            default_grant_type="authorization_code",
            grant_types={
                "authorization_code": self.token_grant_choice,
                "client_credentials": self.credentials_grant,
                "refresh_token": self.refresh_grant,
            },
            # oauthlib takes the token handler here (as its own servers do); types-oauthlib says str.
            default_token_type=self.bearer,  # type: ignore[arg-type]
        )
        RevocationEndpoint.__init__(self, request_validator)
        IntrospectEndpoint.__init__(self, request_validator)

    @catch_errors_and_unavailability
    def validate_authorization_request(
        self, uri: str, http_method: Any = "GET", body: Any = None, headers: Any = None
    ) -> Any:
        """oauthlib's AuthorizationEndpoint.validate_authorization_request, on a request
        whose URL query is parsed once (`_ParsedOnceRequest`)."""
        return self._validate_authorization(
            _ParsedOnceRequest(uri, http_method=http_method, body=body, headers=headers)
        )

    @catch_errors_and_unavailability
    def validate_authorization_params(
        self, path: str, items: list[tuple[str, str]], headers: dict[str, str]
    ) -> Any:
        """`validate_authorization_request(path + "?" + urlencode(items), "GET", "", headers)`
        for parameters already decoded (`_DecodedParamsRequest`): the same checks, the same
        answer (tests/oidc/test_authorize_differential.py compares them)."""
        return self._validate_authorization(_DecodedParamsRequest(path, items, headers))

    def _validate_authorization(self, request: Any) -> Any:
        """oauthlib's AuthorizationEndpoint.validate_authorization_request after its Request."""
        request.scopes = utils.scope_to_list(request.scope)
        response_types: dict[Any, Any] = self.response_types
        response_type_handler = response_types.get(request.response_type, self.default_response_type_handler)
        return response_type_handler.validate_authorization_request(request)

    def validate_token_request(self, request: Any) -> None:
        """oauthlib's checks, then: a grant type we do not offer is unsupported_grant_type.

        oauthlib hands a missing or unknown grant type to the authorization-code grant, which
        accepts "openid" as one of its own (and django-oauth-toolkit then fails an assertion:
        a 500).
        """
        super().validate_token_request(request)
        if request.grant_type not in self.grant_types:
            raise UnsupportedGrantTypeError(request=request)
