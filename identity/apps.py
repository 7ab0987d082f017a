from importlib import import_module

from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_out
from django.utils.translation import gettext_lazy as _

from consent import rights as rights_registry
from identity import account_sections


class IdentityConfig(AppConfig):
    name = "identity"
    verbose_name = _("Comptes et connexion")
    default_auto_field = "django.db.models.BigAutoField"

    def import_models(self) -> None:
        # The OAuth/OIDC models (clients, codes, tokens, PAR, ...) keep identity's app label
        # and tables but live with the protocol, in identity.oidc.models, which the accounts
        # layer (identity.models) must not import: register them here, at the same step of
        # app loading as identity.models.
        super().import_models()
        import_module(f"{self.name}.oidc.models")

    def ready(self) -> None:
        # Imported here, not at the top: these modules import models, which exist only once
        # the app registry is ready (this method).
        from identity import (  # noqa: PLC0415 - imports models
            account_summary,
            checks,  # noqa: F401 - registers system checks
            sessions,
        )
        from identity.oidc import backchannel, claims, connector_subjects, profiles_tokens, session_tokens  # noqa: PLC0415 - imports models
        from identity.oidc import selectors as oidc_selectors  # noqa: PLC0415 - imports models

        # Signing out of Django (account page, RP-initiated logout) ends the session record.
        user_logged_out.connect(sessions.on_user_logged_out, dispatch_uid="identity.sessions.logout")
        # The standard OpenID Connect claims are the first claim provider (scopes openid,
        # profile, email, address, phone); other apps register theirs in their own ready().
        if claims.STANDARD_PROVIDER not in claims.providers():
            claims.register(claims.STANDARD_PROVIDER)
        # Ending a session revokes the tokens issued in it, then notifies its partners through
        # the outbox (back-channel logout): listeners run in the order registered.
        session_tokens.register()
        backchannel.register()
        # profiles' partner API accepts a resident's access token from a partner back-end:
        # the protocol layer reads it for profiles (profiles.partner_tokens).
        profiles_tokens.register()
        # Connectors name some partners' residents by the partner's own `sub` (connectors.subjects).
        connector_subjects.register()
        # Mon compte: identity's sections, and the partners' (identity/account_sections.py).
        account_summary.register_sections()
        account_sections.register(
            account_sections.AccountSection(
                "services",
                _("Services connectés"),
                "oidc:account-services",
                20,
                oidc_selectors.services_summary,
                _("Voir les services connectés à mon compte et leur retirer l'accès"),
            )
        )
        rights_registry.register_module("identity.rights", "identity.oidc.rights")  # data-subject rights
        # Our staff pages for partner clients replace django-oauth-toolkit's (registered by
        # the admin autodiscovery, which django.contrib.admin ran before this app is ready).
        from identity.oidc import admin as oidc_admin  # noqa: PLC0415 - imports models

        oidc_admin.register()
