from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ProfilesConfig(AppConfig):
    """Declared and inferred personalisation data (built by a later issue)."""

    name = "profiles"
    verbose_name = _("Profils de personnalisation")
