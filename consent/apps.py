from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsentConfig(AppConfig):
    """Purposes, versioned notices, the append-only consent ledger, receipts and proofs."""

    name = "consent"
    verbose_name = _("Consentements")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from consent import checks  # noqa: F401  (registers system checks)
        from consent.rights import register_provider
        from consent.rights_provider import erase, export

        register_provider("consent", export=export, erase=erase)
