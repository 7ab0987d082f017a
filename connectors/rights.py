"""The connectors app's data-rights provider: outbox messages concerning the resident.

Registered from ConnectorsConfig.ready(). An outbox row has no foreign key to the
account; the rows concerning a resident are found by what they carry:

- messages about one of the resident's browser sessions (`payload["sid"]`): back-channel
  logouts to partners, carrying the pairwise `sub` the partner knows the resident by;
- emails still queued to the resident's address (their payload is sealed: each queued
  email is opened to compare the recipient). Delivered and abandoned emails were blanked
  by the relay (connectors.outbox): nothing in them points at anyone any more.

Export section "connectors": `outbox`, a list of {id, kind, partner, status, attempts,
created_at, delivered_at, template (emails only)}: never the payload (sealed emails,
logout token identifiers).

Export section "links": the resident's links to partner accounts (connectors.PartnerLink):
partner, connector kind and label, the card number (the resident's own data; never the PIN
or the birth date, which are never stored), its masked display, status, expiry, the
non-secret attributes (block reasons, the transport contract's type) and dates: the link's
facts, as we hold them. What each partner itself holds is asked through the outbox, one
`rights.partner_export` message per partner (connectors/rights_export.py), and lands in the
archive's top-level `partners` (consent.rights_requests): never a call to a partner here.

Erasure of the links: deleted (the keyed hash and the sealed card number with them). The
partners the resident linked an account at are listed by `consent.erasure` before this runs
(connectors registers `selectors.links_partners` as a partner source), and each gets its
`rights.partner_erasure` message (connectors/rights_erasure.py).

Erasure of the outbox (after identity.oidc's provider queued the back-channel logouts, before the
account and its session records go):
- messages still pending are kept and will be delivered: the back-channel logouts this
  erasure queued are how partners learn that the resident's sessions ended, and an email
  queued to the resident (e.g. the erasure's confirmation) must still reach them; the
  relay blanks each email once delivered or abandoned;
- dead-lettered messages are kept as they are, so an operator can still replay a logout
  the partner has not received (their payload is pseudonymous: a pairwise `sub`, a `sid`);
- delivered messages about the resident's sessions have their payload blanked: the row
  stays as the record of the delivery (kind, partner, dates), nothing in it points at the
  resident any more.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from connectors.handlers import EMAIL
from connectors.models import OutboxMessage, PartnerLink
from connectors.sealing import Unsealable, open_reference
from consent.rights import ORDER_OUTBOX, ErasureReport
from identity.emails import UnreadableEmail, open_email
from identity.models import BrowserSession, User

NAME = "connectors"
ORDER = ORDER_OUTBOX
MODELS = (
    "connectors.OutboxMessage",  # no foreign key: found through sessions and sealed addresses
    "connectors.PartnerLink",
    # The operators' work items of emailed rights requests: ids and dates, the answering
    # operator (an FK to a staff account, SET_NULL when that account goes); nothing about the
    # resident they concern (connectors/partner_answers.py).
    "connectors.PartnerRightsAsk",
)


def _session_messages(user: User) -> Any:
    sids = list(BrowserSession.objects.filter(user=user).values_list("sid", flat=True))
    return OutboxMessage.objects.filter(payload__sid__in=sids) if sids else OutboxMessage.objects.none()


def _queued_emails(user: User) -> list[OutboxMessage]:
    address = user.email.casefold()
    found = []
    for message in OutboxMessage.objects.filter(kind=EMAIL, status=OutboxMessage.Status.PENDING):
        try:
            email = open_email(idempotency_key=message.idempotency_key, payload=message.payload)
        except UnreadableEmail:
            continue
        if email.to.casefold() == address:
            found.append(message)
    return found


def _card_number(link: PartnerLink) -> str | None:
    try:
        return open_reference(link.pk, link.reference_sealed)
    except Unsealable:
        return None


def _links_export(user: User) -> list[dict[str, Any]]:
    links = PartnerLink.objects.filter(user=user).select_related("connector__client").order_by("created_at")
    rows = []
    for link in links:
        reference = _card_number(link)
        rows.append(
            {
                "id": str(link.pk),
                "partner": link.connector.client.client_id,
                "connector": link.connector.kind,
                "label": link.connector.label,
                "reference": reference,
                "masked_reference": link.masked_reference,
                "status": link.status,
                "expires_on": link.expires_on.isoformat() if link.expires_on else None,
                "attributes": dict(link.attributes),
                "last_checked_at": link.last_checked_at.isoformat(),
                "created_at": link.created_at.isoformat(),
            }
        )
    return rows


def export(user: User) -> dict[str, Any]:
    messages = {message.pk: message for message in _session_messages(user)}
    messages.update((message.pk, message) for message in _queued_emails(user))
    rows = sorted(messages.values(), key=lambda message: (message.created_at, str(message.pk)))
    return {
        "links": _links_export(user),
        "outbox": [
            {
                "id": str(message.pk),
                "kind": message.kind,
                "partner": message.partner,
                "status": message.status,
                "attempts": message.attempts,
                "created_at": message.created_at.isoformat(),
                "delivered_at": message.delivered_at.isoformat() if message.delivered_at else None,
                **({"template": message.payload.get("template", "")} if message.kind == EMAIL else {}),
            }
            for message in rows
        ],
    }


@transaction.atomic
def erase(user: User) -> ErasureReport:
    session_messages = _session_messages(user)
    blanked = (
        session_messages.filter(status=OutboxMessage.Status.DELIVERED).exclude(payload={}).update(payload={})
    )
    pending = session_messages.filter(status=OutboxMessage.Status.PENDING).count()
    dead = session_messages.filter(status=OutboxMessage.Status.DEAD).count()
    emails = len(_queued_emails(user))
    links, _by_model = PartnerLink.objects.filter(user=user).delete()
    return ErasureReport(
        provider=NAME,
        erased=[
            "links to partner accounts (card numbers, sealed, and their keyed hashes)",
            "payload of delivered messages about the resident's sessions",
        ],
        kept=[
            "pending messages, delivered after the erasure: back-channel logouts to partners, "
            "emails to the resident (blanked once delivered or abandoned)",
            "dead-lettered messages (pseudonymous), for an operator to replay",
        ],
        details={"links": links, "blanked": blanked, "pending": pending + emails, "dead": dead},
    )
