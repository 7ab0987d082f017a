from django.apps import AppConfig
from django.contrib.auth.signals import user_logged_in
from django.utils.translation import gettext_lazy as _

from common import metrics as metrics_registry
from consent import rights as rights_registry
from identity import account_sections


class ConsentConfig(AppConfig):
    """Purposes, versioned notices, the append-only consent ledger, receipts and proofs."""

    name = "consent"
    verbose_name = _("Consentements")
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        # Imported here, not at the top: these modules import models, which exist only once the
        # app registry is ready (this method).
        from consent import (  # noqa: PLC0415 - imports models
            account_erasure,
            checks,  # noqa: F401 - registers system checks
            erasure,
            metrics,
            views_account,
            views_rights,
        )
        from identity import admin as identity_admin  # noqa: PLC0415 - imports models

        rights_registry.register_module("consent.rights_provider")  # data-subject rights
        metrics_registry.register_collector(metrics.collect)  # the ledger's size and tree head age, /metrics
        # Mon compte: the resident's consents to the metropolis' own purposes (identity/account_sections.py).
        account_sections.register(
            account_sections.AccountSection(
                "consents",
                _("Consentements"),
                "consent:account-consents",
                30,
                views_account.consents_summary,
                _("Voir mes consentements, les donner ou les retirer, et télécharger mes reçus"),
            )
        )
        # Mon compte: the copy of the resident's data (GDPR Art. 15 and 20).
        account_sections.register(
            account_sections.AccountSection(
                "export",
                _("Copie de mes données"),
                "consent:export",
                80,
                views_rights.export_summary,
                _("Recevoir une copie de toutes mes données"),
            )
        )
        # Mon compte › Suppression du compte; the notice at sign-in while a deletion waits.
        account_erasure.register_section()
        user_logged_in.connect(
            account_erasure.erasure_sign_in_notice, dispatch_uid="consent.erasure_sign_in_notice"
        )
        identity_admin.register_account_eraser(erasure.erasure_now)  # the admin's delete erases
