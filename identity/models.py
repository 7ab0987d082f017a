"""Accounts, partner clients, OAuth/OIDC records and signing keys.

The django-oauth-toolkit models are swapped for ours from the first migration so that
we can store what the library does not (hashed codes, keyed client-secret hashes,
authentication time, partner metadata) without fighting it later.
"""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

from django.contrib.auth.base_user import AbstractBaseUser, BaseUserManager
from django.contrib.auth.models import PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
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


def normalize_email(email: str) -> str:
    """Emails are case-insensitive logins: stored trimmed and lower-cased."""
    return (email or "").strip().lower()


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def get_by_natural_key(self, username: str | None) -> User:
        return self.get(email=normalize_email(username or ""))

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=normalize_email(email), **extra)
        if password:
            user.set_password(password)
        else:
            user.set_unusable_password()
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", True)
        extra.setdefault("is_superuser", True)
        extra.setdefault("email_verified", True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    LANGUAGES = (("fr", "Français"), ("en", "English"))

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    email = models.EmailField(_("adresse e-mail"), max_length=254, unique=True)
    email_verified = models.BooleanField(_("adresse e-mail vérifiée"), default=False)
    given_name = models.CharField(_("prénom"), max_length=150, blank=True)
    family_name = models.CharField(_("nom"), max_length=150, blank=True)
    preferred_language = models.CharField(_("langue préférée"), max_length=8, choices=LANGUAGES, default="fr")
    # Optional contact details (OIDC Core §5.1 `phone` and `address` scopes): blank unless
    # the resident gives them; an empty claim is never sent.
    phone_number = models.CharField(_("numéro de téléphone"), max_length=32, blank=True)
    phone_number_verified = models.BooleanField(_("numéro de téléphone vérifié"), default=False)
    street_address = models.CharField(_("adresse (rue)"), max_length=255, blank=True)
    locality = models.CharField(_("commune"), max_length=120, blank=True)
    postal_code = models.CharField(_("code postal"), max_length=16, blank=True)
    region = models.CharField(_("région"), max_length=120, blank=True)
    country = models.CharField(_("pays"), max_length=80, blank=True)
    is_active = models.BooleanField(_("actif"), default=True)
    is_staff = models.BooleanField(_("équipe"), default=False)
    created_at = models.DateTimeField(_("créé le"), default=timezone.now, editable=False)
    updated_at = models.DateTimeField(_("modifié le"), auto_now=True)

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []

    class Meta:
        verbose_name = _("résident")
        verbose_name_plural = _("résidents")
        constraints = [
            models.CheckConstraint(condition=models.Q(email=Lower("email")), name="user_email_lowercase"),
        ]

    def __str__(self) -> str:
        return str(self.id)

    def clean(self) -> None:
        super().clean()
        self.email = normalize_email(self.email)

    @property
    def full_name(self) -> str:
        return f"{self.given_name} {self.family_name}".strip()


class HashedValue(str):
    """A value read back from a hashed column: already hashed, never hashed again."""


class HashedTokenField(models.CharField):
    """Stores SHA-256 of a single-use, high-entropy value (authorization codes).

    Plain strings are hashed both when saved and when used in a lookup, so
    `Model.objects.get(code=presented_code)` works unchanged while the database only
    ever sees digests. Values loaded from the database are `HashedValue`s and are
    passed through as they are, so re-saving a row does not hash twice. A digest
    presented from outside is a plain string and gets hashed, so it never matches.
    """

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> HashedValue | None:
        return None if value is None else HashedValue(value)

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None or isinstance(value, HashedValue):
            return value
        return hashlib.sha256(str(value).encode("utf-8")).hexdigest()


class Client(AbstractApplication):
    """A partner service (relying party) or resource server registered by an operator."""

    GRANT_CHOICES = (
        (AbstractApplication.GRANT_AUTHORIZATION_CODE, _("Code d'autorisation")),
        (AbstractApplication.GRANT_CLIENT_CREDENTIALS, _("Identifiants du client")),
    )

    # Our secrets are stored with a keyed hash (common.crypto), never with the
    # password hasher django-oauth-toolkit would otherwise use.
    hash_client_secret = models.BooleanField(default=False, editable=False)
    grant_types = models.CharField(
        _("types d'autorisation"),
        max_length=255,
        default=AbstractApplication.GRANT_AUTHORIZATION_CODE,
        help_text=_("Séparés par des espaces : authorization_code, client_credentials."),
    )
    allowed_scopes = models.CharField(
        _("portées autorisées"),
        max_length=500,
        default="openid profile email",
        help_text=_("Portées que ce client peut demander, séparées par des espaces."),
    )
    SIGNING_ALGORITHMS = (("RS256", "RS256"), ("ES256", "ES256"))

    # ID tokens (and logout tokens) are signed with our key for this algorithm.
    algorithm = models.CharField(
        _("algorithme de signature"), max_length=5, choices=SIGNING_ALGORITHMS, default="RS256"
    )
    backchannel_logout_uri = models.URLField(_("URI de déconnexion back-channel"), max_length=500, blank=True)
    backchannel_logout_session_required = models.BooleanField(
        _("la déconnexion back-channel demande le sid"), default=False
    )
    frontchannel_logout_uri = models.URLField(
        _("URI de déconnexion front-channel"), max_length=500, blank=True
    )
    frontchannel_logout_session_required = models.BooleanField(
        _("la déconnexion front-channel demande iss et sid"), default=False
    )
    sector_identifier_uri = models.URLField(
        _("URI d'identifiant de secteur"),
        max_length=500,
        blank=True,
        help_text=_(
            "Les partenaires d'un même secteur (l'hôte de cette URI) reçoivent le même identifiant par paire."
        ),
    )
    # Fixed at registration so that editing redirect URIs later never changes the
    # residents' subjects at this partner (identity/oidc/subjects.py).
    subject_sector = models.CharField(
        _("secteur de l'identifiant par paire"),
        max_length=255,
        blank=True,
        help_text=_(
            "Hôte pour lequel l'identifiant par paire est calculé (identifiant de secteur ou hôte "
            "de redirection)."
        ),
    )
    is_resource_server = models.BooleanField(
        _("serveur de ressources"),
        default=False,
        help_text=_("Peut appeler le point d'introspection."),
    )
    # RFC 8707: the identifier clients name in `resource` to get tokens meant for this
    # resource server (then in their `aud`, RFC 9068), which it may then introspect.
    resource_identifier = models.CharField(
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
    is_internal = models.BooleanField(
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
    token_endpoint_auth_method = models.CharField(
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
    jwks_uri = models.URLField(
        _("URI du JWKS du client"),
        max_length=500,
        blank=True,
        help_text=_("Où le client publie ses clés publiques (private_key_jwt)."),
    )
    require_par = models.BooleanField(
        _("exige des demandes d'autorisation poussées"),
        default=False,
        help_text=_("Les demandes d'autorisation doivent passer par le point PAR (RFC 9126)."),
    )
    require_mfa = models.BooleanField(
        _("exige une authentification multifacteur"),
        default=False,
        help_text=_("Les résidents doivent s'être connectés avec un second facteur (acr MFA)."),
    )
    logo_uri = models.URLField(_("URI du logo"), max_length=500, blank=True)
    policy_uri = models.URLField(_("URI de la politique de confidentialité"), max_length=500, blank=True)
    contacts = models.CharField(_("contacts techniques"), max_length=500, blank=True)

    class Meta(AbstractApplication.Meta):
        swappable = "OAUTH2_PROVIDER_APPLICATION_MODEL"
        verbose_name = _("client partenaire")
        verbose_name_plural = _("clients partenaires")

    # Protocol endpoints read clients through an in-process cache (identity/client_cache.py):
    # forget this one on every change so that this process sees it at once (other processes
    # within the cache's TTL). Bulk queryset updates bypass these two methods.
    def save(self, *args: Any, **kwargs: Any) -> None:
        from identity.client_cache import client_cache_forget

        super().save(*args, **kwargs)
        client_cache_forget(self.client_id)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        from identity.client_cache import client_cache_forget

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
        # RFC 9700 §4.1.3: exact string comparison, nothing else.
        return uri in self.redirect_uris.split()

    def post_logout_redirect_uri_allowed(self, uri: str) -> bool:
        return uri in self.post_logout_redirect_uris.split()

    def check_secret(self, presented: str) -> bool:
        return keyed_hash_matches(presented, self.client_secret or "")

    @property
    def signing_algorithm(self) -> str:
        return self.algorithm if self.algorithm in {"RS256", "ES256"} else "RS256"

    @property
    def jwk_key(self):  # type: ignore[override]
        from identity.keys import active_signing_key

        return active_signing_key(self.signing_algorithm).jwk

    def clean(self) -> None:
        from django.core.exceptions import ValidationError

        try:
            super().clean()
        except ValidationError as exc:
            if not hasattr(exc, "error_dict"):
                raise
            # django-oauth-toolkit wants OIDC_RSA_PRIVATE_KEY for RS256; our keys live in
            # the database (identity.keys), so that complaint does not apply.
            errors = {field: e for field, e in exc.error_dict.items() if field != "algorithm"}
            if errors:
                raise ValidationError(errors) from exc
        if self.algorithm not in {"RS256", "ES256"}:
            raise ValidationError({"algorithm": _("Choisissez RS256 ou ES256.")})
        if not self.is_internal and not self.sector_identifier_uri:
            from identity.oidc.subjects import redirect_hosts

            if len(redirect_hosts(self.redirect_uris.split())) > 1:
                raise ValidationError(
                    {
                        "sector_identifier_uri": _(
                            "Des URI de redirection sur plusieurs hôtes demandent une URI d'identifiant "
                            "de secteur (les identifiants par paire sont calculés par secteur)."
                        )
                    }
                )


class AuthorizationCode(AbstractGrant):
    code = HashedTokenField(max_length=64, unique=True, verbose_name=_("code (SHA-256)"))
    auth_time = models.DateTimeField(_("heure d'authentification"), null=True)
    # Redeemed codes are kept until they expire so that a replay is recognised and the
    # tokens issued from the first redemption (this refresh-token family) are revoked.
    redeemed_at = models.DateTimeField(_("échangé le"), null=True, blank=True)
    token_family = models.UUIDField(_("famille de jetons"), null=True, blank=True)
    # The browser session (BrowserSession.sid) the resident authorized from; carried to
    # the tokens so that ending the session revokes them and tells the partner.
    sid = models.CharField(_("identifiant de session"), max_length=64, blank=True, db_index=True)
    # How the resident authenticated for this request (ID token `acr`/`amr`), as checked
    # by the authorization endpoint: never read again from a session that may have changed.
    acr = models.CharField(_("niveau d'authentification"), max_length=100, blank=True)
    amr = models.JSONField(_("méthodes d'authentification"), default=list, blank=True)

    class Meta(AbstractGrant.Meta):
        swappable = "OAUTH2_PROVIDER_GRANT_MODEL"


class AccessToken(AbstractAccessToken):
    sid = models.CharField(_("identifiant de session"), max_length=64, blank=True, db_index=True)
    # The authorization request's `claims` parameter (OIDC Core §5.5), read at userinfo.
    claims_request = models.JSONField(_("claims demandés"), null=True, blank=True)

    class Meta(AbstractAccessToken.Meta):
        swappable = "OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL"


class RefreshToken(AbstractRefreshToken):
    auth_time = models.DateTimeField(_("heure d'authentification"), null=True)
    sid = models.CharField(_("identifiant de session"), max_length=64, blank=True, db_index=True)
    # Carried to the tokens a refresh issues: the `claims` parameter and the level reached.
    claims_request = models.JSONField(_("claims demandés"), null=True, blank=True)
    acr = models.CharField(_("niveau d'authentification"), max_length=100, blank=True)
    amr = models.JSONField(_("méthodes d'authentification"), default=list, blank=True)

    class Meta(AbstractRefreshToken.Meta):
        swappable = "OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL"

    def revoke(self) -> bool:  # type: ignore[override]
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
        from django.db import connections, router, transaction

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

    def __str__(self) -> str:
        return f"PAR {self.pk}"


class ClientAssertionJti(models.Model):
    """`jti`s of client assertions already accepted (private_key_jwt), kept until they expire."""

    id = models.BigAutoField(primary_key=True)
    client_id = models.CharField(max_length=100)
    jti_hash = models.CharField(max_length=64)
    expires_at = models.DateTimeField(db_index=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=("client_id", "jti_hash"), name="clientassertionjti_unique")
        ]

    def __str__(self) -> str:
        return f"jti {self.pk}"


class RevokedAccessToken(models.Model):
    """Client-credentials access tokens revoked (RFC 7009) before they expire.

    Those tokens are self-contained JWTs with no row of their own
    (identity/oidc/access_tokens.py); introspection refuses a `jti` listed here. Rows are
    removed once the token has expired anyway.
    """

    jti = models.CharField(max_length=64, primary_key=True)
    client_id = models.CharField(max_length=100)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"revoked access token {self.pk}"


class BrowserSession(models.Model):
    """A resident's sign-in on one browser: the OP session that `sid` names (OIDC Session 1.0).

    Bound to the Django session (which holds the sid); ended by sign-out, by "sign out
    everywhere", by revocation from the account pages or by a later sign-in of another
    resident on the same browser. Ending it revokes the tokens issued in it and notifies
    the partners that received them (identity/sessions.py).
    """

    id = models.BigAutoField(primary_key=True)
    sid = models.CharField(_("identifiant de session"), max_length=64, unique=True, editable=False)
    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="browser_sessions")
    created_at = models.DateTimeField(_("créée le"), default=timezone.now, editable=False)
    auth_time = models.DateTimeField(_("heure d'authentification"), default=timezone.now)
    amr = models.JSONField(_("méthodes d'authentification"), default=list, blank=True)
    acr = models.CharField(_("niveau d'authentification"), max_length=100, blank=True)
    user_agent = models.CharField(_("navigateur (user agent)"), max_length=200, blank=True)
    device = models.CharField(_("appareil"), max_length=64, blank=True)
    last_seen_at = models.DateTimeField(_("vue pour la dernière fois"), default=timezone.now)
    ended_at = models.DateTimeField(_("terminée le"), null=True, blank=True)
    end_reason = models.CharField(_("motif de fin"), max_length=32, blank=True)
    # The Django session key, encrypted (common.crypto): lets "sign out everywhere" end
    # a session from another browser.
    session_key_encrypted = models.BinaryField(null=True, blank=True, editable=False)
    clients = models.ManyToManyField(
        "identity.Client", through="SessionClient", related_name="browser_sessions", blank=True
    )

    class Meta:
        verbose_name = _("session de navigateur")
        verbose_name_plural = _("sessions de navigateur")
        ordering = ("-last_seen_at",)
        indexes = [models.Index(fields=("user", "ended_at"), name="browsersession_user_active")]

    def __str__(self) -> str:
        return f"session {self.pk}"

    @property
    def is_active(self) -> bool:
        return self.ended_at is None


class SessionClient(models.Model):
    """A partner client that received tokens in a browser session."""

    session = models.ForeignKey(BrowserSession, on_delete=models.CASCADE, related_name="session_clients")
    client = models.ForeignKey("identity.Client", on_delete=models.CASCADE, related_name="+")
    first_issued_at = models.DateTimeField(default=timezone.now)
    last_issued_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [models.UniqueConstraint(fields=("session", "client"), name="sessionclient_unique")]

    def __str__(self) -> str:
        return f"session {self.session_id} client {self.client_id}"


class SigningKey(models.Model):
    """A JWS signing key. Private half encrypted at rest (common.crypto)."""

    kid = models.CharField(max_length=64, unique=True)
    algorithm = models.CharField(max_length=10, choices=(("RS256", "RS256"), ("ES256", "ES256")))
    private_key_encrypted = models.BinaryField()
    public_jwk = models.JSONField()
    created_at = models.DateTimeField(default=timezone.now)
    # Published in JWKS from creation; signs from `active_from`; stops signing at
    # `retired_at`; leaves JWKS at `expires_at` (after every token it signed expired).
    # `rotate_keys --prune` then destroys the private half; the public half stays for
    # verifying historical signatures (it is never published again).
    active_from = models.DateTimeField(default=timezone.now)
    retired_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ("-active_from",)
        indexes = [models.Index(fields=("algorithm", "active_from"))]

    def __str__(self) -> str:
        return f"{self.algorithm} {self.kid}"


class EmailVerification(models.Model):
    """A single-use, expiring email verification link (token stored as keyed hash)."""

    user = models.ForeignKey(User, on_delete=models.CASCADE, related_name="email_verifications")
    token_hash = models.CharField(max_length=80, unique=True)
    email = models.EmailField(max_length=254)
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"verification {self.pk}"


class AuditEvent(models.Model):
    """Security audit trail: ids and event names, never personal data."""

    id = models.BigAutoField(primary_key=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)
    event = models.CharField(max_length=64, db_index=True)
    acting_user_id = models.UUIDField(null=True, blank=True)
    subject_user_id = models.UUIDField(null=True, blank=True, db_index=True)
    client_id = models.CharField(max_length=100, blank=True)
    ip_hash = models.CharField(max_length=64, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ("-created_at",)

    def __str__(self) -> str:
        return f"{self.event} {self.created_at:%Y-%m-%d %H:%M:%S}"


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
