"""The data-rights provider of residents' SCIM accounts at partners (connectors.ScimAccount).

Registered from ConnectorsConfig.ready() beside connectors.rights.

Export section "connectors_scim": `accounts`, one per SCIM partner that holds the resident:
partner, connector kind and label, the partner's id for the user, whether it is active, the
last action and its date. What the partner itself holds (its SCIM user) is asked like every
partner's, through the outbox (`rights.partner_export`, connectors/rights_export.py →
ScimConnector.export by the resident's `sub`), and joins the archive's partners' part.

Erasure: the rows are deleted. The partner's user is deleted by the erasure message every
partner with a connector receives (connectors/rights_erasure.py), which carries the
resident's `sub` past the account's deletion.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from connectors.models import ScimAccount
from consent.rights import ORDER_OUTBOX, ErasureReport
from identity.models import User

NAME = "connectors_scim"
ORDER = ORDER_OUTBOX
MODELS = ("connectors.ScimAccount",)


def export(user: User) -> dict[str, Any]:
    accounts = (
        ScimAccount.objects.filter(user=user).select_related("connector__client").order_by("created_at")
    )
    return {
        "accounts": [
            {
                "partner": account.connector.client.client_id,
                "connector": account.connector.kind,
                "label": account.connector.label,
                "scim_id": account.scim_id,
                "active": account.active,
                "last_action": account.last_action,
                "synced_at": account.synced_at.isoformat(),
                "created_at": account.created_at.isoformat(),
            }
            for account in accounts
        ]
    }


@transaction.atomic
def erase(user: User) -> ErasureReport:
    count, _by_model = ScimAccount.objects.filter(user=user).delete()
    return ErasureReport(
        provider=NAME,
        erased=["the record of the resident's users at SCIM partners (their ids there)"],
        kept=[],
        details={"scim_accounts": count},
    )
