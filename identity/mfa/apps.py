from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from consent import rights as rights_registry


class MfaConfig(AppConfig):
    """Second factors (TOTP, backup codes, passkeys): an app of its own inside identity so
    that its migrations never clash with the identity app's."""

    name = "identity.mfa"
    label = "mfa"
    verbose_name = _("Seconds facteurs")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        rights_registry.register_module("identity.mfa.rights")  # data-subject rights
