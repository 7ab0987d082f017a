from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from consent import rights as rights_registry


class ConnectorsConfig(AppConfig):
    """Partner accounts, the connector protocol and the outbox that delivers to partners."""

    name = "connectors"
    verbose_name = _("Connecteurs partenaires")

    def ready(self) -> None:
        from connectors import handlers

        handlers.register_builtin_handlers()
        rights_registry.register_module("connectors.rights")  # data-subject rights
