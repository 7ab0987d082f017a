from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from consent import rights as rights_registry


class ConnectorsConfig(AppConfig):
    """The transactional outbox (connectors/outbox.py, `manage.py outbox_worker`): messages written
    with the change that caused them and delivered at least once. Today it carries the emails
    to residents (connectors/handlers.py) and the back-channel logout notifications
    (registered by identity/oidc/backchannel.py). The partner connectors themselves (accounts
    at partners, the connector protocol) will live here; their protocol layers come first:
    connectors/sip2/ (library systems, docs/connectors/library.md)."""

    name = "connectors"
    verbose_name = _("Messages sortants")

    def ready(self) -> None:
        from connectors import handlers  # noqa: PLC0415 - imports models: only once the app registry is ready

        handlers.register_builtin_handlers()
        from connectors import rights_erasure  # noqa: PLC0415 - imports models: only once the app registry is ready

        rights_erasure.register_erasure_handlers()
        rights_registry.register_module("connectors.rights")  # data-subject rights
