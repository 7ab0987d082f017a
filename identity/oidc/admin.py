"""Staff pages for partner clients (issue 4, "Partner onboarding").

Replaces django-oauth-toolkit's default admin for our swapped models: the library's pages
show (and let staff type) the client secret, and know nothing of our settings. Here:

- every setting of a partner is editable, validated by `Client.clean`, that is by the rules
  `register_client` uses too (identity.oidc.client_checks: URIs, known grants and scopes, one
  authentication method matching the client type, keys for private_key_jwt, a sector when the
  redirect URIs are on several hosts);
- the secret (a keyed hash) is never displayed; "Regenerate secret" shows a new secret
  once, in a message, and stores only its keyed hash (common.crypto);
- the pairwise-subject sector is fixed when the client is created and shown read-only:
  changing it would change every resident's `sub` at that partner;
- a sector identifier URI is fetched when a client is added with one, and when its sector
  identifier URI or redirect URIs change: the document must be a JSON array listing every
  redirect URI (identity/oidc/sector.py), otherwise a field error and nothing is saved.

Registered from IdentityConfig.ready(), after the admin autodiscovery that registered the
library's pages.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import models, transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.utils.translation import gettext_lazy as _
from oauth2_provider.models import (
    get_access_token_model,
    get_application_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
)

from common.crypto import generate_secret, keyed_hash
from identity import reauth
from identity.audit import audit_log
from identity.client_cache import client_cache_forget
from identity.oidc.sector import SectorDocumentError, sector_document_check
from identity.oidc.subjects import SectorError, sector_for
from identity.request_user import request_user

SECRET_METHODS = ("client_secret_basic", "client_secret_post")


def _formfield(field: Any, **kwargs: Any) -> Any:
    if isinstance(field, models.URLField):
        kwargs.setdefault("assume_scheme", "https")
    return field.formfield(**kwargs)


class PartnerClientForm(forms.ModelForm):
    jwks = forms.JSONField(
        required=False,
        label=_("JWKS du client"),
        help_text=_("Clés publiques uniquement (private_key_jwt), en JWK Set."),
        widget=forms.Textarea(attrs={"rows": 6}),
    )

    class Meta:
        model = get_application_model()
        formfield_callback = _formfield
        fields = (
            "name",
            "client_type",
            "grant_types",
            "allowed_scopes",
            "redirect_uris",
            "post_logout_redirect_uris",
            "allowed_origins",
            "token_endpoint_auth_method",
            "jwks",
            "jwks_uri",
            "require_par",
            "require_mfa",
            "dpop_bound_access_tokens",
            "algorithm",
            "backchannel_logout_uri",
            "backchannel_logout_session_required",
            "frontchannel_logout_uri",
            "frontchannel_logout_session_required",
            "sector_identifier_uri",
            "is_internal",
            "is_resource_server",
            "resource_identifier",
            "logo_uri",
            "policy_uri",
            "contacts",
        )

    def _post_clean(self) -> None:
        # The configuration rules are Client.clean's (identity.oidc.client_checks), run here by
        # ModelForm._post_clean; the sector document is fetched only once they pass.
        super()._post_clean()  # type: ignore[misc]  # Django's ModelForm has it; django-stubs does not
        self._check_sector_document(self.cleaned_data)

    def _check_sector_document(self, data: dict[str, Any]) -> None:
        """OIDC Core §8.1: the document at the sector identifier URI lists every redirect URI.

        Fetched on creation, and on a change of either side of the check; not when other
        settings are edited, so that a partner's document being down does not block them.
        """
        uri = data.get("sector_identifier_uri")
        if not uri or self.has_error("sector_identifier_uri") or self.has_error("redirect_uris"):
            return
        adding = self.instance._state.adding
        if not adding and not {"sector_identifier_uri", "redirect_uris"} & set(self.changed_data):
            return

        try:
            sector_document_check(
                sector_identifier_uri=uri, redirect_uris=(data.get("redirect_uris") or "").split()
            )
        except SectorDocumentError as exc:
            self.add_error("sector_identifier_uri", str(exc))


@admin.action(description=_("Régénérer le secret du client (affiché une seule fois)"))
def regenerate_secret(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet
) -> HttpResponse | None:
    if not reauth.recent_mfa(request):  # sudo mode (PartnerClientAdmin.changelist_view checks too)
        return reauth.reauth_redirect(request)
    for client in queryset:
        if client.token_endpoint_auth_method not in SECRET_METHODS:
            modeladmin.message_user(
                request,
                _("%(client)s s'authentifie sans secret : rien à régénérer.") % {"client": client.client_id},
                messages.WARNING,
            )
            continue
        secret = generate_secret()
        with transaction.atomic():
            client.client_secret = keyed_hash(secret)
            client.save(update_fields=["client_secret", "updated"])
            audit_log(
                event="client.secret_regenerated",
                acting_user=request_user(request),
                client_id=client.client_id,
            )
        modeladmin.message_user(
            request,
            _(
                "Nouveau secret de %(client)s : %(secret)s — copiez-le maintenant : il est conservé "
                "haché et ne sera plus affiché."
            )
            % {"client": client.client_id, "secret": secret},
            messages.SUCCESS,
        )
    return None


class PartnerClientAdmin(admin.ModelAdmin):
    form = PartnerClientForm
    formfield_overrides = {models.URLField: {"assume_scheme": "https"}}
    actions = [regenerate_secret]
    list_display = (
        "name",
        "client_id",
        "client_type",
        "token_endpoint_auth_method",
        "is_internal",
        "require_mfa",
        "require_par",
    )
    list_filter = ("client_type", "token_endpoint_auth_method", "is_internal", "require_mfa", "require_par")
    search_fields = ("name", "client_id")
    readonly_fields = ("client_id", "subject_sector", "created", "updated")

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        # New partners' ID tokens are signed ES256 unless they ask for RS256 (still a choice).
        return {"algorithm": "ES256", **super().get_changeform_initial_data(request)}

    fieldsets = (
        (None, {"fields": ("name", "client_id", "client_type", "grant_types", "allowed_scopes")}),
        (_("Redirections"), {"fields": ("redirect_uris", "post_logout_redirect_uris")}),
        (_("Pages web du partenaire (CORS)"), {"fields": ("allowed_origins",)}),
        (
            _("Authentification"),
            {
                "fields": (
                    "token_endpoint_auth_method",
                    "jwks",
                    "jwks_uri",
                    "require_par",
                    "require_mfa",
                    "dpop_bound_access_tokens",
                )
            },
        ),
        (_("Jetons et identifiants"), {"fields": ("algorithm", "sector_identifier_uri", "subject_sector")}),
        (
            _("Déconnexion côté partenaire"),
            {
                "fields": (
                    "backchannel_logout_uri",
                    "backchannel_logout_session_required",
                    "frontchannel_logout_uri",
                    "frontchannel_logout_session_required",
                )
            },
        ),
        (
            _("Partenaire"),
            {
                "fields": (
                    "is_internal",
                    "is_resource_server",
                    "resource_identifier",
                    "logo_uri",
                    "policy_uri",
                    "contacts",
                )
            },
        ),
        (_("Dates"), {"fields": ("created", "updated")}),
    )

    def save_model(self, request: HttpRequest, obj: Any, form: Any, change: bool) -> None:
        grants = obj.grant_types.split()
        obj.authorization_grant_type = grants[0].replace("_", "-") if grants else obj.authorization_grant_type
        secret = None
        if not change:
            try:
                sector = sector_for(
                    redirect_uris=obj.redirect_uris.split(), sector_identifier_uri=obj.sector_identifier_uri
                )
            except SectorError:
                sector = ""
            obj.subject_sector = sector or f"client:{obj.client_id}"
            secret = generate_secret() if obj.token_endpoint_auth_method in SECRET_METHODS else None
            obj.client_secret = keyed_hash(secret) if secret else ""
        elif obj.token_endpoint_auth_method not in SECRET_METHODS:
            obj.client_secret = ""  # a client that moved to keys (or public) keeps no secret
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_log(
                event="client.changed" if change else "client.registered",
                acting_user=request_user(request),
                client_id=obj.client_id,
            )
        if secret:
            self.message_user(
                request,
                _("Secret de %(client)s : %(secret)s — copiez-le maintenant : il ne sera plus affiché.")
                % {"client": obj.client_id, "secret": secret},
                messages.SUCCESS,
            )

    # Sudo mode (identity.reauth): adding, changing or deleting a partner client, and the
    # list's actions (secret regeneration, bulk delete), need a sign-in at the MFA level
    # within the last 10 minutes; reading the list does not.

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        return self._sudo(request) or super().add_view(request, form_url, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return self._sudo(request) or super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        return self._sudo(request) or super().delete_view(request, object_id, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if request.method == "POST" and (request.POST.get("action") or "_save" in request.POST):
            return self._sudo(request) or super().changelist_view(request, extra_context)
        return super().changelist_view(request, extra_context)

    @staticmethod
    def _sudo(request: HttpRequest) -> HttpResponse | None:
        if reauth.recent_mfa(request):
            return None
        reauth.staff_refused_audit(request, reason=reauth.PROBLEM_RECENT_REQUIRED)
        return reauth.reauth_redirect(request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        # A bulk delete bypasses Client.delete(): forget the cached clients here.

        client_ids = list(queryset.values_list("client_id", flat=True))
        super().delete_queryset(request, queryset)
        for client_id in client_ids:
            client_cache_forget(client_id)


class _TokenAdmin(admin.ModelAdmin):
    """Tokens are read (to see what a partner holds) and revoked by deletion; never shown:
    only their SHA-256 is stored."""

    list_display: tuple[str, ...] = ("id", "application", "user", "created")
    list_select_related = ("application", "user")
    search_fields = ("application__client_id", "user__email")
    exclude = ("token", "token_checksum")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class AccessTokenAdmin(_TokenAdmin):
    list_display = ("id", "application", "user", "scope", "expires", "created")


class RefreshTokenAdmin(_TokenAdmin):
    list_display = ("id", "application", "user", "revoked", "created")


def register(site: admin.AdminSite | None = None) -> None:
    """Replace the library's admin pages for our swapped models by ours (idempotent)."""
    site = site or admin.site
    for model in (
        get_application_model(),
        get_access_token_model(),
        get_refresh_token_model(),
        get_grant_model(),
        get_id_token_model(),
    ):
        if site.is_registered(model):
            site.unregister(model)
    site.register(get_application_model(), PartnerClientAdmin)
    site.register(get_access_token_model(), AccessTokenAdmin)
    site.register(get_refresh_token_model(), RefreshTokenAdmin)
