from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class IdentityConfig(AppConfig):
    name = "identity"
    verbose_name = _("Comptes et connexion")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from identity import checks  # noqa: F401  (registers system checks)
