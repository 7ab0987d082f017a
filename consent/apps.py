from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ConsentConfig(AppConfig):
    """Purposes, notices and the consent ledger (built by the consent-ledger issue)."""

    name = "consent"
    verbose_name = _("Consentements")
