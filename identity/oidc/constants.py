"""Protocol constants of our OpenID Provider."""

GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_REFRESH_TOKEN = "refresh_token"
REGISTRABLE_GRANTS = (GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS)

PKCE_METHOD = "S256"

# Scopes a client may be registered for, and the standard claims each releases
# (OpenID Connect Core 1.0 §5.4).
SCOPE_CLAIMS = {
    "openid": ("sub",),
    "profile": ("name", "given_name", "family_name", "locale", "updated_at"),
    "email": ("email", "email_verified"),
}
SUPPORTED_SCOPES = tuple(SCOPE_CLAIMS)

ACR_BASIC = "eidas1"
