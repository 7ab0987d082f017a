from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _

from common import metrics as metrics_registry
from consent import rights as rights_registry
from identity import account_sections


class ConnectorsConfig(AppConfig):
    """The transactional outbox (connectors/outbox.py, `manage.py outbox_worker`): messages written
    with the change that caused them and delivered at least once (emails to residents,
    back-channel logouts, rights requests). The partner connectors: the connector protocol
    (connectors/protocol.py), the kinds (connectors/registry.py: "library", connectors/library.py
    over connectors/sip2/), their configuration per partner client (PartnerConnector) and the
    residents' links (PartnerLink, connectors/links.py; Mon compte › Cartes et abonnements)."""

    name = "connectors"
    verbose_name = _("Connecteurs et messages sortants")

    def ready(self) -> None:
        # Imported here: these modules import models, which exist only once the registry is ready.
        from connectors import (  # noqa: PLC0415 - imports models
            claims,
            email_partner,  # noqa: F401 - registers the "email" connector kind
            handlers,
            library,  # noqa: F401 - registers the "library" connector kind
            links,
            metrics,
            monitoring,
            rights_erasure,
            rights_export,
            scim,  # noqa: F401 - registers the "scim" connector kind
            scim_provisioning,
            selectors,
            ticketing,  # noqa: F401 - registers the "ticketing" connector kind
            transport,  # noqa: F401 - registers the "transport" connector kind
            views,
        )
        from consent import erasure  # noqa: PLC0415 - imports models

        handlers.register_builtin_handlers()
        rights_erasure.register_erasure_handlers()
        rights_export.register_export_handlers()  # the export asks every partner too
        links.register_link_handlers()
        scim_provisioning.register_scim_handlers()  # SCIM partners follow consent and account changes
        rights_registry.register_module("connectors.rights", "connectors.scim_rights")  # data-subject rights
        # The erasure asks every partner the resident linked an account at.
        erasure.register_partner_source("connectors.links", selectors.links_partners)
        # Where each partner's erasure request stands in the outbox (the DPO, the resident).
        erasure.register_delivery_reader(monitoring.partner_erasure_deliveries)
        # Mon compte › Cartes et abonnements (identity/account_sections.py).
        account_sections.register(
            account_sections.AccountSection(
                "cards",
                _("Cartes et abonnements"),
                "connectors:cards",
                40,
                views.cards_summary,
                _("Lier mes cartes et abonnements, voir leur état"),
            )
        )
        claims.register_claim_providers()  # library_card, transport_subscription, eligibility
        metrics_registry.register_collector(metrics.collect)  # the outbox's depth per partner, /metrics
