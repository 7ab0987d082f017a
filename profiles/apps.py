from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class ProfilesConfig(AppConfig):
    """Empty for now: no models, views or URLs. It reserves the app (label and migrations
    package) for the residents' declared and inferred personalisation data, built by a later
    issue on the claims and rights registries (docs/architecture.md)."""

    name = "profiles"
    verbose_name = _("Profils de personnalisation")
