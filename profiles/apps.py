from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from consent.dpo import navigation
from identity import account_sections


class ProfilesConfig(AppConfig):
    """The residents' personalisation data: what they declare, and interests inferred from
    their browsing, each kept only while its purpose is granted (docs/architecture.md)."""

    name = "profiles"
    verbose_name = _("Profils de personnalisation")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here: these modules import models, which exist only once the registry is ready.
        from consent import purpose_data  # noqa: PLC0415 - imports models
        from consent import rights as rights_registry  # noqa: PLC0415 - imports models
        from profiles import claims, services, taxonomy, views  # noqa: PLC0415 - imports models

        rights_registry.register_module("profiles.rights")
        # Data kept under a purpose is erased in the transaction of the event that ends it.
        for purpose_code in sorted(set(taxonomy.FIELD_PURPOSES.values())):
            purpose_data.register_holder(
                purpose_data.PurposeDataHolder(
                    name=f"profiles.declared:{purpose_code}",
                    purpose_code=purpose_code,
                    erase=services.declared_erase_holder(purpose_code),
                    # A batch of decisions clears the fields of all its ended purposes at once.
                    group="profiles.declared",
                    erase_many=services.declared_erase_many,
                    # A single decision asks first, in its context read, whether anything is held.
                    held=services.declared_held,
                )
            )
        purpose_data.register_holder(
            purpose_data.PurposeDataHolder(
                name="profiles.interests",
                purpose_code=taxonomy.BROWSING_PURPOSE,
                erase=services.interests_erase,
                held=services.interests_held,
            )
        )
        purpose_data.register_browser_link_listener("profiles.interests", services.browser_interests_link)
        claims.register_claim_providers()
        # Mon compte › Personnalisation, right after Consentements (the purposes that govern it).
        account_sections.register(
            account_sections.AccountSection(
                "personalisation",
                _("Personnalisation"),
                "profiles:account-personalisation",
                35,
                views.personalisation_summary,
                _("Voir, corriger ou effacer mes données de personnalisation et mes centres d'intérêt"),
            )
        )
        navigation.register_page(
            navigation.DpoPage(url_name="profiles-dpo:inference", label=_("Personnalisation"), order=60)
        )
