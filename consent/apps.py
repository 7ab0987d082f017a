from django.apps import AppConfig
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
