"""The OAuth 2.0 / OpenID Connect records: partner clients, codes, tokens, pushed
authorization requests, client-assertion `jti`s, revoked access tokens and the notices
shown for internal services.

Their code lives with the protocol (identity.oidc); their app label, tables and
migrations stay identity's (`app_label = "identity"`): `identity.Client` is still what
settings.OAUTH2_PROVIDER_APPLICATION_MODEL names, and the accounts layer refers to these
models by that string (or through oauth2_provider's get_*_model()), never by import.
Django registers them when IdentityConfig.import_models() imports this module, right
after identity.models.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import connections, models, router, transaction
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from oauth2_provider.models import (
    AbstractAccessToken,
    AbstractApplication,
    AbstractGrant,
    AbstractIDToken,
    AbstractRefreshToken,
)

from common.crypto import keyed_hash_matches
from identity.client_cache import client_cache_forget
from identity.keys import active_signing_key
from identity.models import HashedTokenField, User
from identity.oidc.client_checks import client_config_errors
from identity.oidc.client_uris import is_native_client, native_redirect_schemes, redirect_uri_matches
from identity.oidc.resources import resource_identifier_check


class Client(AbstractApplication):
    """A partner service (relying party) or resource server registered by an operator."""

    GRANT_CHOICES = (
        (AbstractApplication.GRANT_AUTHORIZATION_CODE, _("Code d'autorisation")),
        (AbstractApplication.GRANT_CLIENT_CREDENTIALS, _("Identifiants du client")),
    )

    # Our secrets are stored with a keyed hash (common.crypto), never with the
    # password hasher django-oauth-toolkit would otherwise use.
    hash_client_secret: models.BooleanField[bool, bool] = models.BooleanField(default=False, editable=False)
    grant_types: models.CharField[str, str] = models.CharField(
        _("types d'autorisation"),
        max_length=255,
        default=AbstractApplication.GRANT_AUTHORIZATION_CODE,
        help_text=_("Séparés par des espaces : authorization_code, client_credentials."),
    )
    allowed_scopes: models.CharField[str, str] = models.CharField(
        _("portées autorisées"),
        max_length=500,
        default="openid profile email",
        help_text=_("Portées que ce client peut demander, séparées par des espaces."),
    )
    SIGNING_ALGORITHMS = (("RS256", "RS256"), ("ES256", "ES256"))

    # ID tokens (and logout tokens) are signed with our key for this algorithm.
    algorithm: models.CharField[str, str] = models.CharField(
        _("algorithme de signature"), max_length=5, choices=SIGNING_ALGORITHMS, default="RS256"
    )
    backchannel_logout_uri: models.URLField[str, str] = models.URLField(
        _("URI de déconnexion back-channel"), max_length=500, blank=True
    )
    backchannel_logout_session_required: models.BooleanField[bool, bool] = models.BooleanField(
        _("la déconnexion back-channel demande le sid"), default=False
    )
    frontchannel_logout_uri: models.URLField[str, str] = models.URLField(
        _("URI de déconnexion front-channel"), max_length=500, blank=True
    )
    frontchannel_logout_session_required: models.BooleanField[bool, bool] = models.BooleanField(
        _("la déconnexion front-channel demande iss et sid"), default=False
    )
    sector_identifier_uri: models.URLField[str, str] = models.URLField(
        _("URI d'identifiant de secteur"),
        max_length=500,
        blank=True,
        help_text=_(
            "Les partenaires d'un même secteur (l'hôte de cette URI) reçoivent le même identifiant par paire."
        ),
    )
    # Fixed at registration so that editing redirect URIs later never changes the
    # residents' subjects at this partner (identity/oidc/subjects.py).
    subject_sector: models.CharField[str, str] = models.CharField(
        _("secteur de l'identifiant par paire"),
        max_length=255,
        blank=True,
        help_text=_(
            "Hôte pour lequel l'identifiant par paire est calculé (identifiant de secteur ou hôte "
            "de redirection)."
        ),
    )
    is_resource_server: models.BooleanField[bool, bool] = models.BooleanField(
        _("serveur de ressources"),
        default=False,
        help_text=_("Peut appeler le point d'introspection."),
    )
    # RFC 8707: the identifier clients name in `resource` to get tokens meant for this
    # resource server (then in their `aud`, RFC 9068), which it may then introspect.
    resource_identifier: models.CharField[str | None, str | None] = models.CharField(
        _("identifiant de ressource"),
        max_length=500,
        unique=True,
        null=True,
        blank=True,
        help_text=_(
            "URI https absolue, sans fragment (RFC 8707) : les clients demandent resource=<celle-ci> "
            "pour obtenir des jetons d'accès destinés à ce serveur de ressources."
        ),
    )
    is_internal: models.BooleanField[bool, bool] = models.BooleanField(
        _("service métropolitain interne"),
        default=False,
        help_text=_("Exploité par Nantes Métropole elle-même (mission de service public)."),
    )
    AUTH_CLIENT_SECRET_BASIC = "client_secret_basic"
    AUTH_CLIENT_SECRET_POST = "client_secret_post"
    AUTH_PRIVATE_KEY_JWT = "private_key_jwt"
    AUTH_NONE = "none"
    AUTH_METHODS = (
        (AUTH_CLIENT_SECRET_BASIC, "client_secret_basic"),
        (AUTH_CLIENT_SECRET_POST, "client_secret_post"),
        (AUTH_PRIVATE_KEY_JWT, "private_key_jwt"),
        (AUTH_NONE, _("aucune (client public, PKCE)")),
    )
    # The one way this client authenticates at the token, PAR, revocation and introspection
    # endpoints (OIDC Registration `token_endpoint_auth_method`, enforced strictly).
    token_endpoint_auth_method: models.CharField[str, str] = models.CharField(
        _("méthode d'authentification du client"),
        max_length=32,
        choices=AUTH_METHODS,
        default=AUTH_CLIENT_SECRET_BASIC,
    )
    jwks = models.JSONField(
        _("JWKS du client"),
        null=True,
        blank=True,
        help_text=_("Clés publiques du client (private_key_jwt), en JWK Set."),
    )
    jwks_uri: models.URLField[str, str] = models.URLField(
        _("URI du JWKS du client"),
        max_length=500,
        blank=True,
        help_text=_("Où le client publie ses clés publiques (private_key_jwt)."),
    )
    require_par: models.BooleanField[bool, bool] = models.BooleanField(
        _("exige des demandes d'autorisation poussées"),
        default=False,
        help_text=_("Les demandes d'autorisation doivent passer par le point PAR (RFC 9126)."),
    )
    require_mfa: models.BooleanField[bool, bool] = models.BooleanField(
        _("exige une authentification multifacteur"),
        default=False,
        help_text=_("Les résidents doivent s'être connectés avec un second facteur (acr MFA)."),
    )
    # RFC 9449 §5.2 / OAuth Dynamic Client Registration `dpop_bound_access_tokens`: every
    # token request of this client must carry a DPoP proof.
    dpop_bound_access_tokens: models.BooleanField[bool, bool] = models.BooleanField(
        _("exige DPoP"),
        default=False,
        help_text=_("Les jetons de ce client doivent être liés à une clé DPoP (RFC 9449)."),
    )
    logo_uri: models.URLField[str, str] = models.URLField(_("URI du logo"), max_length=500, blank=True)
    policy_uri: models.URLField[str, str] = models.URLField(
        _("URI de la politique de confidentialité"), max_length=500, blank=True
    )
    contacts: models.CharField[str, str] = models.CharField(
        _("contacts techniques"), max_length=500, blank=True
    )

    class Meta(AbstractApplication.Meta):
        app_label = "identity"
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        verbose_name = _("client partenaire")
        verbose_name_plural = _("clients partenaires")

    # Protocol endpoints read clients through an in-process cache (identity/client_cache.py):
    # forget this one on every change so that this process sees it at once (other processes
    # within the cache's TTL). Bulk queryset updates bypass these two methods.
    def save(self, *args: Any, **kwargs: Any) -> None:
        super().save(*args, **kwargs)
        client_cache_forget(self.client_id)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        client_id = self.client_id
        result = super().delete(*args, **kwargs)
        client_cache_forget(client_id)
        return result

    @property
    def grant_type_list(self) -> list[str]:
        return self.grant_types.split()

    @property
    def scope_list(self) -> list[str]:
        return self.allowed_scopes.split()

    def allows_grant_type(self, *grant_types: str) -> bool:
        # django-oauth-toolkit names grants with hyphens ("authorization-code"); we
        # store the wire names ("authorization_code").
        allowed = {grant.replace("-", "_") for grant in self.grant_type_list}
        return bool(allowed.intersection(grant.replace("-", "_") for grant in grant_types))

    def redirect_uri_allowed(self, uri: str) -> bool:
        # RFC 9700 §4.1.3: exact string comparison; a native app's loopback redirect
        # registered without a port accepts any port (RFC 8252 §7.3; client_uris).
        return any(redirect_uri_matches(registered, uri) for registered in self.redirect_uris.split())

    def get_allowed_schemes(self) -> list[str]:
        # django-oauth-toolkit's check of redirect URIs (clean) and of the redirect it
        # answers with: the deployment's schemes, plus those of this client's native-app
        # redirect URIs (a private-use scheme; http on a loopback IP), which
        # client_checks has accepted by RFC 8252's rules.
        schemes = list(super().get_allowed_schemes())
        extra = native_redirect_schemes(self.redirect_uris.split())
        return schemes + sorted(extra - set(schemes))

    @property
    def is_native_app(self) -> bool:
        """An app on the resident's device (RFC 8252 redirect URIs): the consent screen says so."""
        return is_native_client(self.redirect_uris.split())

    def post_logout_redirect_uri_allowed(self, uri: str) -> bool:
        return uri in self.post_logout_redirect_uris.split()

    def check_secret(self, presented: str) -> bool:
        return keyed_hash_matches(presented, self.client_secret or "")

    @property
    def signing_algorithm(self) -> str:
        return self.algorithm if self.algorithm in {"RS256", "ES256"} else "RS256"

    @property
    def jwk_key(self):
        return active_signing_key(self.signing_algorithm).jwk

    def clean(self) -> None:
        """The library's checks, then ours (identity.oidc.client_checks), reported together."""

        errors: dict[str, list[Any]] = {}
        try:
            super().clean()
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                raise
            # django-oauth-toolkit wants OIDC_RSA_PRIVATE_KEY for RS256; our keys live in
            # the database (identity.keys), so that complaint does not apply.
            errors = {field: list(e) for field, e in exc.error_dict.items() if field != "algorithm"}
        ours = client_config_errors(
            redirect_uris=self.redirect_uris.split(),
            post_logout_redirect_uris=self.post_logout_redirect_uris.split(),
            grant_types=self.grant_types.split(),
            scopes=self.allowed_scopes.split(),
            public=self.client_type == self.CLIENT_PUBLIC,
            auth_method=self.token_endpoint_auth_method,
            signing_alg=self.algorithm,
            is_internal=self.is_internal,
            backchannel_logout_uri=self.backchannel_logout_uri,
            frontchannel_logout_uri=self.frontchannel_logout_uri,
            sector_identifier_uri=self.sector_identifier_uri,
            jwks=self.jwks,
            jwks_uri=self.jwks_uri,
            logo_uri=self.logo_uri,
            policy_uri=self.policy_uri,
            resource_identifier=self.resource_identifier or "",
            allowed_origins=self.allowed_origins.split(),
        )
        for field, messages in ours.items():
            errors.setdefault(field, []).extend(messages)
        if errors:
            raise ValidationError(errors)
        if self.resource_identifier:
            self.resource_identifier = resource_identifier_check(self.resource_identifier)


class AuthorizationCode(AbstractGrant):
    code = HashedTokenField(max_length=64, unique=True, verbose_name=_("code (SHA-256)"))
    auth_time: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        _("heure d'authentification"), null=True
    )
    # Redeemed codes are kept until they expire so that a replay is recognised and the
    # tokens issued from the first redemption (this refresh-token family) are revoked.
    redeemed_at: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        _("échangé le"), null=True, blank=True
    )
    token_family: models.UUIDField[uuid.UUID | None, uuid.UUID | None] = models.UUIDField(
        _("famille de jetons"), null=True, blank=True
    )
    # The browser session (BrowserSession.sid) the resident authorized from; carried to
    # the tokens so that ending the session revokes them and tells the partner.
    sid: models.CharField[str, str] = models.CharField(
        _("identifiant de session"), max_length=64, blank=True, db_index=True
    )
    # How the resident authenticated for this request (ID token `acr`/`amr`), as checked
    # by the authorization endpoint: never read again from a session that may have changed.
    acr: models.CharField[str, str] = models.CharField(
        _("niveau d'authentification"), max_length=100, blank=True
    )
    amr = models.JSONField(_("méthodes d'authentification"), default=list, blank=True)
    # RFC 9449 §10: the `dpop_jkt` of the authorization request; the code is exchanged
    # only with a proof by that key.
    dpop_jkt: models.CharField[str, str] = models.CharField(_("clé DPoP"), max_length=43, blank=True)

    class Meta(AbstractGrant.Meta):
        app_label = "identity"
        swappable = "OAUTH2_PROVIDER_GRANT_MODEL"


class AccessToken(AbstractAccessToken):
    sid: models.CharField[str, str] = models.CharField(
        _("identifiant de session"), max_length=64, blank=True, db_index=True
    )
    # The authorization request's `claims` parameter (OIDC Core §5.5), read at userinfo.
    claims_request = models.JSONField(_("claims demandés"), null=True, blank=True)

    class Meta(AbstractAccessToken.Meta):
        app_label = "identity"
        swappable = "OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL"


class RefreshToken(AbstractRefreshToken):
    # Declared by django-oauth-toolkit's abstract model (the one-to-one to AccessToken),
    # which mypy cannot see.
    access_token_id: int | None
    auth_time: models.DateTimeField[datetime | None, datetime | None] = models.DateTimeField(
        _("heure d'authentification"), null=True
    )
    sid: models.CharField[str, str] = models.CharField(
        _("identifiant de session"), max_length=64, blank=True, db_index=True
    )
    # Carried to the tokens a refresh issues: the `claims` parameter and the level reached.
    claims_request = models.JSONField(_("claims demandés"), null=True, blank=True)
    acr: models.CharField[str, str] = models.CharField(
        _("niveau d'authentification"), max_length=100, blank=True
    )
    amr = models.JSONField(_("méthodes d'authentification"), default=list, blank=True)
    # RFC 9449 §5: a public client's refresh token is bound to the DPoP key of the request
    # that first obtained it (its JWK thumbprint); blank when unbound.
    dpop_jkt: models.CharField[str, str] = models.CharField(_("clé DPoP"), max_length=43, blank=True)

    class Meta(AbstractRefreshToken.Meta):
        app_label = "identity"
        swappable = "OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL"

    def revoke(self) -> bool:
        """Mark this refresh token revoked and delete its access token, as django-oauth-toolkit
        does, in two statements. True if this call revoked it, False if it already was.

        The conditional UPDATE is both the row lock and the claim: of two concurrent
        callers (two rotations of one token, a rotation and a sign-out), exactly one sees
        the row live. The access token is deleted second, so locks are taken in the same
        order as django-oauth-toolkit's (refresh token, then access token).

        `access_token_id` as read with this instance is the one to delete: the column is set
        when the row is created and is only ever cleared afterwards (by this method, or by
        the deletion of that access token), never pointed at another access token.
        """

        access_token_id = self.access_token_id
        using = router.db_for_write(AccessToken)
        now = timezone.now()
        with transaction.atomic(using=using, savepoint=False):
            claimed = (
                type(self)
                .objects.using(using)
                .filter(pk=self.pk, revoked__isnull=True)
                .update(revoked=now, updated=now, access_token=None)
            )
            if not claimed:
                return False
            if access_token_id is not None:
                # This row no longer points at it (cleared just above), and nothing else
                # references an access token's row (the ID token is the one pointed at):
                # a plain DELETE, without the ORM's collector (SELECT, then UPDATE ... SET
                # NULL, then DELETE).
                connection = connections[using]
                quote = connection.ops.quote_name
                with connection.cursor() as cursor:
                    cursor.execute(
                        # Identifiers from the model's metadata, the value as a parameter.
                        f"DELETE FROM {quote(AccessToken._meta.db_table)} "  # noqa: S608
                        f"WHERE {quote(AccessToken._meta.pk.column)} = %s",
                        [access_token_id],
                    )
        self.revoked, self.updated, self.access_token_id = now, now, None
        return True


class IDToken(AbstractIDToken):
    class Meta(AbstractIDToken.Meta):
        app_label = "identity"
        swappable = "OAUTH2_PROVIDER_ID_TOKEN_MODEL"


class PushedAuthorizationRequest(models.Model):
    """An authorization request pushed by a client (RFC 9126), referenced by its request_uri.

    Only the SHA-256 of the random part of `urn:ietf:params:oauth:request_uri:<random>` is
    stored. Bound to the client that pushed it, short-lived and used once.
    """

    id = models.BigAutoField(primary_key=True)
    reference = HashedTokenField(max_length=64, unique=True, verbose_name=_("référence (SHA-256)"))
    client = models.ForeignKey("identity.Client", on_delete=models.CASCADE, related_name="+")
    parameters = models.JSONField(_("paramètres"))
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        app_label = "identity"

    def __str__(self) -> str:
        return f"PAR {self.pk}"


class ClientAssertionJti(models.Model):
    """`jti`s of client assertions already accepted (private_key_jwt), kept until they expire."""

    id = models.BigAutoField(primary_key=True)
    client_id = models.CharField(max_length=100)
    jti_hash = models.CharField(max_length=64)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        app_label = "identity"
        constraints = [
            models.UniqueConstraint(fields=("client_id", "jti_hash"), name="clientassertionjti_unique")
        ]

    def __str__(self) -> str:
        return f"jti {self.pk}"


class DPoPProofJti(models.Model):
    """DPoP proofs already accepted (RFC 9449 §11.1), when no Redis is configured.

    `jti_hash` is the SHA-256 of the proof's key thumbprint and `jti`; the unique constraint
    makes a second use fail across every worker. Rows go once the proof is too old anyway.
    """

    id = models.BigAutoField(primary_key=True)
    jti_hash = models.CharField(max_length=64, unique=True)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        app_label = "identity"

    def __str__(self) -> str:
        return f"DPoP jti {self.pk}"


class RevokedAccessToken(models.Model):
    """Client-credentials access tokens revoked (RFC 7009) before they expire.

    Those tokens are self-contained JWTs with no row of their own
    (identity/oidc/access_tokens.py); introspection refuses a `jti` listed here. Rows are
    removed once the token has expired anyway.
    """

    jti = models.CharField(max_length=64, primary_key=True)
    client_id = models.CharField(max_length=100)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        app_label = "identity"

    def __str__(self) -> str:
        return f"revoked access token {self.pk}"


class InternalServiceNotice(models.Model):
    """That a resident was told what an internal metropolitan service receives (public task).

    Internal services need no consent (GDPR Art. 6(1)(e)): instead the resident is shown an
    information page the first time they are sent to one, and again when it asks for
    scopes beyond those already noticed (identity/oidc/internal_notice.py). This is a
    record of information given, not a consent: it never enters the consent ledger and
    never gates the release of claims.
    """

    id = models.BigAutoField(primary_key=True)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="+")
    client = models.ForeignKey("identity.Client", on_delete=models.CASCADE, related_name="+")
    # Space-separated, sorted: every scope the resident has been told about for this service.
    # Written when the resident leaves the page with "Continuer" (the page was seen).
    scopes = models.CharField(_("portées présentées"), max_length=500)
    first_shown_at = models.DateTimeField(_("première présentation"), default=timezone.now)
    last_shown_at = models.DateTimeField(_("dernière présentation"), default=timezone.now)

    class Meta:
        app_label = "identity"
        verbose_name = _("information service interne")
        verbose_name_plural = _("informations services internes")
        constraints = [
            models.UniqueConstraint(fields=("user", "client"), name="internalservicenotice_unique")
        ]

    def __str__(self) -> str:
        return f"notice {self.pk}"

    @property
    def scope_set(self) -> set[str]:
        return set(self.scopes.split())
