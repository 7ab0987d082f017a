"""The consent screen and the release of claims, both decided by the consent ledger.

A partner receives claims for a purpose "share these scopes with this partner"
(purpose_for_client_scopes below: one purpose per client and scope set, kept in the
ledger's catalogue by consent.services.purpose_for_client). Consent knows purposes, not
scopes: which scopes exist, what the screen says about them and which data categories the
purpose records come from the claims registry (identity/oidc/claims/).
- The screen is skipped only when the ledger grants that purpose now
  (consent.gate.consent_is_granted); `prompt=consent` always shows it.
- The resident's answer is a ledger event (`given` / `refused`, collection method
  `oidc_consent`), written in the transaction that issues the authorization code.
- At token and userinfo time, claims other than `sub` are released only while the ledger
  grants the purpose: a withdrawal stops them at once (userinfo then answers `sub` only).
- Clients the operator marks internal (public task, GDPR Art. 6(1)(e)) get a purpose that
  needs no consent: no screen, no event; the gate still honours a recorded objection.
- A claim provider naming a purpose of its own (ClaimProvider.purpose_code) has its scopes'
  claims released only while that purpose is granted too.
- The resident withdraws a partner's access from "Mon compte" (`sharing_withdraw`): a
  `withdrawn` event for each of the partner's purposes the resident granted (one ledger
  write), the partner's tokens revoked, a back-channel logout queued, an audit row, in one
  transaction.
- SCIM partners (connectors.scim_provisioning) follow both decisions: a consent given queues
  the resident's provisioning, a withdrawal their deactivation, in the same transaction.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import transaction

from connectors import scim_provisioning
from consent.gate import consent_granted_many, consent_is_granted
from consent.selectors import partner_consents_for_user
from consent.services import (
    ConsentError,
    UnknownPurpose,
    consent_record,
    consent_record_many,
    purpose_for_client,
)
from identity.audit import audit_log
from identity.models import SessionClient, User
from identity.oidc import claims as claims_registry
from identity.oidc.backchannel import enqueue_for_withdrawal
from identity.oidc.session_tokens import client_tokens_revoke
from identity.oidc.subjects import subject_for

COLLECTION_METHOD = "oidc_consent"
# How a withdrawal from "Mon compte" is recorded: the account's own form (consent.models).
WITHDRAWAL_COLLECTION_METHOD = "web_form"


def describe_scopes(scopes: list[str]) -> list[dict[str, object]]:
    """The consent screen's lines for these scopes (templates/oidc/consent.html)."""
    return claims_registry.describe_scopes(scopes)


def _normalise_scopes(client: Any, scopes: Iterable[str]) -> list[str]:
    if isinstance(scopes, str):
        scopes = scopes.split()
    normalised = sorted({scope.strip() for scope in scopes if isinstance(scope, str) and scope.strip()})
    if not normalised:
        raise ConsentError("at least one scope is required")
    allowed = set(client.allowed_scopes.split())
    refused = [scope for scope in normalised if scope not in allowed]
    if refused:
        raise ConsentError(f"scopes not allowed for this client: {' '.join(refused)}")
    return normalised


def purpose_for_client_scopes(*, client: Any, scopes: Iterable[str]) -> Any:
    """The purpose "share these claims with this partner", one per (client, scope set).

    Get-or-create, safe under concurrency (consent.services.purpose_for_client). `scopes`
    (iterable or space-separated string) must be allowed for the client; order and
    duplicates do not matter. Its data categories are the scopes' (claims registry). For a
    client marked internal (a metropolitan service under public task) the purpose records
    the sharing but `requires_consent` is False (GDPR Art. 6(1)(e)). ConsentError on a
    client not saved, no scope or a scope the client may not ask for; nothing is written.
    """
    if client is None or getattr(client, "pk", None) is None:
        raise ConsentError("a registered client is required")
    normalised = _normalise_scopes(client, scopes)
    scope_key = " ".join(normalised)
    code = f"share:{client.client_id}:{'+'.join(normalised)}"
    if len(code) > 255:
        code = f"share:{client.client_id}:{hashlib.sha256(scope_key.encode()).hexdigest()[:16]}"
    categories = claims_registry.data_categories(normalised)
    internal = bool(getattr(client, "is_internal", False))
    fields: dict[str, Any] = {
        "code": code,
        "title_fr": f"Partage avec {client.name}"[:200],
        "title_en": f"Sharing with {client.name}"[:200],
        "description_fr": f"Transmettre à {client.name} : {', '.join(c['fr'] for c in categories)}.",
        "description_en": f"Send {client.name}: {', '.join(c['en'] for c in categories)}.",
        "gdpr_article": "Art. 6(1)(e)" if internal else "Art. 6(1)(a)",
        "dpv_legal_basis": "eu-gdpr:A6-1-e" if internal else "eu-gdpr:A6-1-a",
        "dpv_purpose": "dpv:ServiceProvision",
        "data_categories": categories,
        "recipients": [client.name],
        "retention_days": None,
        "consent_lifetime_days": 395,
        "requires_consent": not internal,
    }
    return purpose_for_client(client=client, key=scope_key, fields=fields)


# (client pk, client_id, sorted scopes) -> purpose code. A purpose, once created for a
# client and scope set, keeps its code (purpose_for_client_scopes), so
# the mapping never goes stale; whether it is granted is asked of the ledger every time.
_purpose_codes: dict[tuple[Any, str, tuple[str, ...]], str] = {}
_PURPOSE_CODES_MAX = 4096


def sharing_purpose_code(client: Any, scopes: list[str] | set[str]) -> str | None:
    """The ledger purpose for these scopes at this client; None if it cannot exist."""
    key = (getattr(client, "pk", None), getattr(client, "client_id", ""), tuple(sorted(set(scopes))))
    code = _purpose_codes.get(key) if key[0] is not None else None
    if code is not None:
        return code
    try:
        code = purpose_for_client_scopes(client=client, scopes=sorted(scopes)).code
    except ConsentError:
        return None
    if key[0] is not None:
        if len(_purpose_codes) >= _PURPOSE_CODES_MAX:
            _purpose_codes.clear()
        _purpose_codes[key] = code
    return code


def known_purpose_code(client: Any, scopes: list[str] | set[str]) -> str | None:
    """The purpose code if this process already resolved it; never reads or writes the database.

    For callers holding input not yet authenticated (userinfo before the token's row is
    read): sharing_purpose_code may create the purpose, which only an authenticated
    request may cause.
    """
    key = (getattr(client, "pk", None), getattr(client, "client_id", ""), tuple(sorted(set(scopes))))
    return _purpose_codes.get(key) if key[0] is not None else None


def sharing_granted(user: Any, client: Any, scopes: list[str] | set[str]) -> bool:
    """Does the ledger allow sending this client the claims of these scopes, now?"""
    if user is None or client is None or not scopes:
        return False
    for _attempt in range(2):
        code = sharing_purpose_code(client, scopes)
        if code is None:
            return False
        try:
            return consent_is_granted(user=user, purpose_code=code)
        except UnknownPurpose:
            # Only if the purpose row vanished (a test database flushed): forget and redo.
            _purpose_codes.clear()
        except ConsentError:
            return False
    return False


def _scopes_denied_by_provider_purpose(user: Any, wanted: set[str]) -> set[str]:
    """The scopes whose provider's own purpose (ClaimProvider.purpose_code) the ledger denies."""
    needed = claims_registry.scope_purposes(frozenset(wanted))
    if not needed:
        return set()
    try:  # every purpose in one statement
        answers = consent_granted_many(user=user, purpose_codes=needed)
    except ConsentError:  # an unknown purpose among them: asked one by one, it is never granted
        answers = {}
        for code in needed:
            try:
                answers[code] = consent_is_granted(user=user, purpose_code=code)
            except ConsentError:
                answers[code] = False
    return {scope for code, gated in needed.items() if not answers.get(code, False) for scope in gated}


def scope_release(
    client: Any, user: Any, scopes: list[str] | set[str] | frozenset[str]
) -> tuple[bool, dict[str, bool]]:
    """(whether the resident's sharing consent for this client and scope set is granted now,
    per scope whether its claims may go to the client now): the rule of released_claims, the
    sharing consent AND the claim provider's own purpose. For profiles' partner API
    (identity/oidc/profiles_tokens.py)."""
    wanted = set(scopes)
    if not sharing_granted(user, client, wanted):
        return False, dict.fromkeys(wanted, False)
    denied = _scopes_denied_by_provider_purpose(user, wanted)
    return True, {scope: scope not in denied for scope in wanted}


def released_claims(
    client: Any, user: Any, scopes: list[str] | set[str], *, granted: bool | None = None
) -> dict[str, Any]:
    """The claims this client receives now, in the ID token or at userinfo.

    `sub` always (pairwise per sector, public only for internal services, OIDC Core §8).
    Every other claim only under a scope the token was granted, and only while the
    consent ledger grants that sharing: a withdrawn consent leaves `sub` alone. Claims
    named in the `claims` request parameter (§5.5) are released under the same rule, so
    the parameter never widens what the scopes cover. `granted` is the ledger's answer when
    the caller already has it from this request (userinfo reads it with the token). The
    claims themselves come from the registered providers (identity.oidc.claims.read_claims);
    a provider's scopes whose own purpose is not granted release nothing.
    """
    claims: dict[str, Any] = {"sub": subject_for(client, user)}
    wanted = set(scopes)
    if not wanted - {"openid"}:
        return claims
    if granted is None:
        granted = sharing_granted(user, client, wanted)
    if not granted:
        return claims
    wanted -= _scopes_denied_by_provider_purpose(user, wanted)
    for name, value in claims_registry.read_claims(user, wanted, client=client).items():
        if name != "sub":
            claims[name] = value
    return claims


def consent_decision_record(*, user: Any, purpose_code: str, allow: bool) -> Any:
    """The resident's answer on the consent screen, as a ledger event (caller's transaction).
    Given: the partner's SCIM connectors, if any, provision the resident (outbox, same
    transaction; connectors.scim_provisioning)."""
    event = consent_record(
        user=user,
        purpose_code=purpose_code,
        event_type="given" if allow else "refused",
        collection_method=COLLECTION_METHOD,
    )
    client = event.purpose.client
    if allow and client is not None:
        scim_provisioning.sharing_changed(
            user=user, client_id=client.client_id, reason=scim_provisioning.REASON_GRANTED, key=str(event.id)
        )
    return event


# --- Withdrawal from "Mon compte" (Services connectés) ------------------------------------------


class NotConnected(LookupError):
    """The resident never allowed this client to receive anything (or it is internal): nothing
    to withdraw. Nothing was written."""


@dataclass
class Withdrawal:
    """What `sharing_withdraw` did."""

    events: list[Any] = field(default_factory=list)
    tokens: dict[str, int] = field(default_factory=dict)
    backchannel_logouts: int = 0


def _withdrawn_events(user: User, purpose_codes: list[str]) -> list[Any]:
    """A `withdrawn` event by the resident for each code, in order, in one ledger write
    (consent_record_many). A retired purpose among them (UnknownPurpose: the gate grants it no
    more, nothing to record) makes that write roll back and each code be recorded on its own,
    the retired ones skipped."""
    if not purpose_codes:
        return []
    try:
        with transaction.atomic():
            return consent_record_many(
                decisions=[(code, "withdrawn") for code in purpose_codes],
                collection_method=WITHDRAWAL_COLLECTION_METHOD,
                user=user,
            )
    except UnknownPurpose:
        pass
    events = []
    for code in purpose_codes:
        try:
            events.append(
                consent_record(
                    user=user,
                    purpose_code=code,
                    event_type="withdrawn",
                    collection_method=WITHDRAWAL_COLLECTION_METHOD,
                )
            )
        except UnknownPurpose:
            continue
    return events


def sharing_withdraw(*, user: User, client: Any, ip: str = "") -> Withdrawal:
    """The resident withdraws `client`'s access to their data ("Retirer l'accès").

    In one transaction: a `withdrawn` event, by the resident (collection method `web_form`),
    for each of the client's sharing purposes the resident currently grants (given or
    renewed, lapsed ones included), all in one ledger write (consent_record_many); every
    access, refresh and ID token and unredeemed code the client holds for the resident
    revoked (identity.oidc.session_tokens); a back-channel logout queued for the resident's
    live sessions the client received tokens in, which it then leaves
    (identity.oidc.backchannel); an audit row (ids and counts only). Its next userinfo call
    answers `invalid_token`; even with a token obtained meanwhile, the gate
    releases `sub` alone; its next authorization request shows the consent screen again.

    NotConnected when the resident never gave this client consent (internal services need
    none: the right to object goes to the DPO). LedgerTampered (consent.ledger) when the
    ledger cannot be extended or a row of the resident's events is altered: nothing is
    written, no token is revoked. Withdrawing again revokes whatever the client got since
    and records nothing new.
    """
    with transaction.atomic():
        # Two withdrawals of one resident (two tabs, a double click) one after the other: the
        # second sees the first's events and records nothing more.
        list(User.objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))
        consents = [
            consent for consent in partner_consents_for_user(user=user) if consent.client_pk == client.pk
        ]
        if client.is_internal or not any(consent.first_given_at for consent in consents):
            raise NotConnected(client.client_id)
        result = Withdrawal()
        result.events = _withdrawn_events(
            user, [consent.purpose_code for consent in consents if consent.grant_standing]
        )
        result.tokens = client_tokens_revoke(user=user, client=client)
        if not result.events and not any(result.tokens.values()):
            return result  # already withdrawn, nothing obtained since
        links = SessionClient.objects.filter(
            session__user=user, session__ended_at__isnull=True, client=client
        )
        sids = sorted(set(links.values_list("session__sid", flat=True)))
        links.delete()
        withdrawal = str(result.events[0].id) if result.events else str(uuid.uuid4())
        result.backchannel_logouts = enqueue_for_withdrawal(
            user=user, client=client, sids=sids, withdrawal=withdrawal
        )
        # The partner's SCIM connectors, if any, deactivate the resident's user there.
        scim_provisioning.sharing_changed(
            user=user, client_id=client.client_id, reason=scim_provisioning.REASON_WITHDRAWN, key=withdrawal
        )
        audit_log(
            event="oidc.sharing_withdrawn",
            acting_user=user,
            subject_user=user,
            client_id=client.client_id,
            ip=ip,
            data={
                "ledger_events": [str(event.id) for event in result.events],
                **result.tokens,
                "backchannel_logouts": result.backchannel_logouts,
            },
        )
    return result
