from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in
from django.utils.translation import gettext_lazy as _

from consent import rights as rights_registry


class ConsentConfig(AppConfig):
    """Purposes, versioned notices, the append-only consent ledger, receipts and proofs."""

    name = "consent"
    verbose_name = _("Consentements")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from consent import checks  # noqa: F401, PLC0415 - registers system checks; imports models, so only once the registry is ready

        rights_registry.register_module("consent.rights_provider")  # data-subject rights
        from consent import account_erasure, erasure  # noqa: PLC0415 - import models: only once the registry is ready
        from identity import admin as identity_admin  # noqa: PLC0415 - imports models: only once the registry is ready

        account_erasure.register_section()  # Mon compte › Suppression du compte
        identity_admin.register_account_eraser(erasure.erasure_now)  # the admin's delete erases
        user_logged_in.connect(
            account_erasure.erasure_sign_in_notice, dispatch_uid="consent.erasure_sign_in_notice"
        )
