from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in, user_logged_out
from django.utils.translation import gettext_lazy as _

from consent import rights as rights_registry


class FranceConnectConfig(AppConfig):
    """Its own app (label "franceconnect") so that its migrations never clash with identity's."""

    name = "identity.franceconnect"
    label = "franceconnect"
    verbose_name = _("FranceConnect")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these modules import models, which exist only once
        # the app registry is ready (this method).
        from identity.franceconnect import (  # noqa: PLC0415 - imports models
            checks,  # noqa: F401 - registers system checks
            receivers,
        )

        # Every sign-in and sign-out keeps or drops the pending FranceConnect identity.
        user_logged_in.connect(receivers.on_user_logged_in, dispatch_uid="franceconnect_pending_sign_in")
        user_logged_out.connect(receivers.on_user_logged_out, dispatch_uid="franceconnect_pending_sign_out")
        rights_registry.register_module("identity.franceconnect.rights")  # data-subject rights
