"""The claims registry: every scope a partner can ask for, and the claims it releases.

identity.oidc asks registered **claim providers** for everything scope-related; nothing
else lists scopes. A provider (registry.ClaimProvider) declares:

- its scopes (registry.ScopeSpec), each with the claims it releases, the consent screen's
  plain-language line (`what`, `why`, and a label per claim: French msgids under gettext,
  English in locale/en/LC_MESSAGES/django.po) and the ledger data category
  (registry.DataCategory, fr and en) that the sharing purpose records;
- how to read the claims of a resident: `read(user, scopes) -> dict`, with `user_fields`
  naming the `User` columns it needs so that userinfo reads them with the token and the
  ledger's answer in its single SQL statement (identity.oidc.access_tokens);
- optionally `purpose_code`, a ledger purpose that must be granted too, besides the
  resident's answer on the consent screen;
- optionally `client_read(user, scopes, client)`, used instead of `read` when the claims
  go to a partner (the ID token, userinfo): for a claim whose content depends on the
  partner (connectors' `library_card` carries the card number only for the partner whose
  own connector needs it).

Everything reads the registry: discovery (`scopes_supported`, `claims_supported`),
client registration (unknown scopes refused), the consent screen
(identity.oidc.sharing.describe_scopes), the sharing purpose written to the ledger
(identity.oidc.sharing.purpose_for_client_scopes: its data categories), and the release
of claims in the ID token and at userinfo (identity.oidc.sharing.released_claims: `sub`,
then the claims of granted scopes only, while the ledger grants the sharing).

The standard OpenID Connect claims (standard.STANDARD_PROVIDER: `openid`, `profile`,
`email`, `address`, `phone`) are the first provider, registered by
identity.apps.IdentityConfig.ready(). Adding a scope means registering a provider, from
the owning app's AppConfig.ready(). For instance a future `profiles` app offering the
resident's commune:

    from django.utils.translation import gettext_lazy as _
    from identity.oidc.claims import ClaimProvider, DataCategory, ScopeSpec, register

    def read(user, scopes):                      # one query for every granted scope
        profile = ResidentProfile.objects.filter(user=user).only("commune").first()
        return {"commune": profile.commune} if profile and profile.commune else {}

    class ProfilesConfig(AppConfig):
        def ready(self):
            register(ClaimProvider(
                name="profiles",
                scopes=(ScopeSpec(
                    name="commune",
                    claims=("commune",),
                    what=_("Votre commune"),
                    why=_("pour vous proposer les services de votre commune"),
                    claim_labels={"commune": _("commune de résidence")},
                    data_category=DataCategory(fr="Commune de résidence", en="Town of residence"),
                ),),
                read=read,
            ))

Rules enforced by `register` (ClaimsRegistryError): a scope belongs to one provider, a
claim to one scope, a provider name is registered once. `unregister(name)` exists for
tests. Registering changes `generation()`, which the discovery document and userinfo's
prepared statement key their caches on.

Public API: `register`, `unregister`, `providers`, `supported_scopes`, `is_supported_scope`,
`scope_spec`, `scope_claims`, `claim_scope`, `supported_claims`, `resident_user_fields`,
`describe_scopes`, `data_categories`, `purposes_needed` (`scope_purposes`: the same, worked out once
per set of scopes), `read_claims`, `generation`;
`parse_claims_request` (the `claims` parameter, OIDC Core §5.5).
"""

from identity.oidc.claims.registry import (
    ClaimProvider,
    ClaimsRegistryError,
    DataCategory,
    RegistryScopes,
    ScopeSpec,
    claim_scope,
    data_categories,
    describe_scopes,
    generation,
    is_supported_scope,
    providers,
    purposes_needed,
    read_claims,
    register,
    resident_user_fields,
    scope_claims,
    scope_purposes,
    scope_spec,
    supported_claims,
    supported_scopes,
    unregister,
)
from identity.oidc.claims.request import parse_claims_request
from identity.oidc.claims.standard import STANDARD_PROVIDER, address_claim, standard_claims

__all__ = [
    "STANDARD_PROVIDER",
    "ClaimProvider",
    "ClaimsRegistryError",
    "DataCategory",
    "RegistryScopes",
    "ScopeSpec",
    "address_claim",
    "claim_scope",
    "data_categories",
    "describe_scopes",
    "generation",
    "is_supported_scope",
    "parse_claims_request",
    "providers",
    "purposes_needed",
    "read_claims",
    "register",
    "resident_user_fields",
    "scope_claims",
    "scope_purposes",
    "scope_spec",
    "standard_claims",
    "supported_claims",
    "supported_scopes",
    "unregister",
]
