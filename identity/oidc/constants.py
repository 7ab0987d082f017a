"""Protocol constants of our OpenID Provider (the `acr` levels are in identity/levels.py)."""

GRANT_AUTHORIZATION_CODE = "authorization_code"
GRANT_CLIENT_CREDENTIALS = "client_credentials"
GRANT_REFRESH_TOKEN = "refresh_token"
REGISTRABLE_GRANTS = (GRANT_AUTHORIZATION_CODE, GRANT_CLIENT_CREDENTIALS)

PKCE_METHOD = "S256"

# Scopes and their claims: the claims registry (identity/oidc/claims/), not constants.

# Client authentication (OIDC Core §9, RFC 7523).
AUTH_METHODS = ("client_secret_basic", "client_secret_post", "private_key_jwt", "none")
CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
CLIENT_ASSERTION_ALGS = ("RS256", "ES256")
CLIENT_ASSERTION_MAX_LIFETIME = 300  # seconds: exp may be at most this far ahead

# Pushed authorization requests (RFC 9126).
PAR_URN_PREFIX = "urn:ietf:params:oauth:request_uri:"
PAR_EXPIRES_IN = 60
