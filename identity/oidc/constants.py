"""Protocol constants of our OpenID Provider."""

GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_REFRESH_TOKEN = "refresh_token"
REGISTRABLE_GRANTS = (GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS)

PKCE_METHOD = "S256"

# Scopes and their claims: the claims registry (identity/oidc/claims/), not constants.

# Authentication levels (issue 5): a basic level (password, FranceConnect eidas1) and MFA.
ACR_BASIC = "eidas1"
ACR_MFA = "https://refeds.org/profile/mfa"
ACR_VALUES_SUPPORTED = (ACR_BASIC, ACR_MFA)
# Rank of each level we can reach; an unknown value outranks everything we offer.
ACR_RANK = {ACR_BASIC: 1, ACR_MFA: 2}

# Client authentication (OIDC Core §9, RFC 7523).
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT_ASSERTION_ALGS = ("RS256", "ES256")
CLIENT_ASSERTION_MAX_LIFETIME = 300  # seconds: exp may be at most this far ahead

# Pushed authorization requests (RFC 9126).
PAR_URN_PREFIX = "urn:ietf:params:oauth:request_uri:"
PAR_EXPIRES_IN = 60
