from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class FranceConnectConfig(AppConfig):
    """Its own app (label "franceconnect") so that its migrations never clash with identity's."""

    name = "identity.franceconnect"
    label = "franceconnect"
    verbose_name = _("FranceConnect")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from identity.franceconnect import checks  # noqa: F401  (registers system checks)
