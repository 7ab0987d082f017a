from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConnectorsConfig(AppConfig):
    """Partner accounts, the connector protocol and the outbox (built by a later issue)."""

    name = "connectors"
    verbose_name = _("Connecteurs partenaires")
