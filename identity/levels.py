"""Authentication levels (`acr` values, OpenID Connect Core §2), defined once.

Two levels, both reachable here: the basic level (a password, or FranceConnect's eIDAS
"low" level ``eidas1``) and multi-factor authentication (REFEDS MFA profile). The MFA
flows, the browser sessions and the protocol layer (identity.oidc: discovery, /authorize,
ID tokens) import these names; none defines its own.

FranceConnect's own scale (eidas1 < eidas2 < eidas3, what we ask FranceConnect for) is
a different thing and stays in identity/franceconnect/client.py.
"""

ACR_BASIC = "eidas1"
ACR_MFA = "https://refeds.org/profile/mfa"
ACR_VALUES_SUPPORTED = (ACR_BASIC, ACR_MFA)
# Rank of each level we can reach; an unknown value outranks everything we offer.
ACR_RANK = {ACR_BASIC: 1, ACR_MFA: 2}
