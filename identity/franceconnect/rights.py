"""The FranceConnect app's data-rights provider: the link to the FranceConnect identity.

Registered from FranceConnectConfig.ready() into consent.rights (not imported here:
identity accounts sit below consent, so `erase` returns a mapping with ErasureReport's
fields).

Export section "franceconnect": `link` is null, or {sub, linked_at, last_used_at}. The
`sub` is given in clear: it is data we hold about the resident (Art. 15), and it is no
credential: FranceConnect computes it for this service alone, it means nothing elsewhere,
and we only ever match it when it comes in an ID token FranceConnect signed. Nothing else
is stored (the identity pivot is used once, never kept: identity/franceconnect/models.py).

Erasure: the link is deleted; a later FranceConnect sign-in with the same identity finds
no account. Nothing is kept.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from identity.franceconnect.models import FranceConnectLink
from identity.models import User

NAME = "franceconnect"
ORDER = 30  # consent.rights.ORDER_FRANCECONNECT
MODELS = ("franceconnect.FranceConnectLink",)


def export(user: User) -> dict[str, Any]:
    link = FranceConnectLink.objects.filter(user=user).first()
    if link is None:
        return {"link": None}
    return {
        "link": {
            "sub": link.sub,
            "linked_at": link.linked_at.isoformat(),
            "last_used_at": link.last_used_at.isoformat() if link.last_used_at else None,
        }
    }


@transaction.atomic
def erase(user: User) -> dict[str, Any]:
    deleted, _by_model = FranceConnectLink.objects.filter(user=user).delete()
    return {"erased": ["FranceConnect link (its sub)"], "kept": [], "details": {"links": deleted}}
