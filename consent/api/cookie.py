"""The cookie-consent API's logic: what a partner's banner shows and recording a visitor's choice.

Views (consent/api/views.py) stay thin: they parse the request and call these functions.
Every choice is one ledger event (collection method `cookie_widget`): `given` for true,
`refused` for false. All the events of one submission are written in one transaction and one
ledger write (`consent.services.consent_record_many`): a bad purpose or value records nothing
at all.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.cache import caches
from django.db import transaction
from oauth2_provider.models import AbstractApplication

from consent.api import selectors as api_selectors
from consent.models import CollectionMethod, EventType, LedgerEvent, Purpose
from consent.selectors import browser_seen_by_client, notice_current
from consent.services import (
    BrowserProofError,
    ConsentError,
    browser_id_hash,
    browser_secret_check,
    browser_subject_register,
    consent_record_many,
    subject_link_browser,
)
from identity.models import User

MAX_CHOICES = 20


class CookieInputError(ValueError):
    """Bad input to the cookie API; `errors` maps each field to what is wrong. Nothing was written."""

    def __init__(self, code: str, message: str, errors: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.errors = errors or {}


def _notice(purpose: Purpose) -> dict[str, Any] | None:
    notice = notice_current(purpose=purpose)
    if notice is None:
        return None
    return {
        "version": notice.version,
        "sha256": notice.content_sha256,
        "published_at": notice.published_at.isoformat(),
        "scope": "purpose" if notice.purpose_id else "global",
    }


def _lifetime_days(purpose: Purpose) -> int:
    # consent.services caps every lifetime at 13 months and uses that cap when unset.
    return min(purpose.consent_lifetime_days or 395, 395)


def cookie_config(client: AbstractApplication) -> dict[str, Any]:
    """What a partner site's banner asks, in French and English (GET …/cookie/config)."""
    controller = settings.CONSENT_CONTROLLER
    purposes = []
    for purpose in api_selectors.cookie_purposes():
        purposes.append(
            {
                "code": purpose.code,
                "title": {"fr": purpose.title_fr, "en": purpose.title_en},
                "description": {"fr": purpose.description_fr, "en": purpose.description_en},
                "requires_consent": purpose.requires_consent,
                "exempt": not purpose.requires_consent,
                "default": not purpose.requires_consent,
                "lawful_basis": {"gdpr": purpose.gdpr_article, "dpv": purpose.dpv_legal_basis},
                "choice_kept_days": _lifetime_days(purpose),
                "retention_days": purpose.retention_days,
                "data_categories": purpose.data_categories,
                "recipients": purpose.recipients,
                "notice": _notice(purpose),
            }
        )
    notice = api_selectors.global_notice()
    return {
        "client_id": client.client_id,
        "partner": {"name": client.name, "policy_uri": client.policy_uri or None},
        "controllers": [
            {
                "name": controller["name"],
                "role": "controller",
                "contact": controller["contact"],
                "email": controller["email"],
                "url": controller["url"],
            }
        ],
        "policy_url": settings.CONSENT_POLICY_URL,
        "notice": None
        if notice is None
        else {"version": notice.version, "sha256": notice.content_sha256, "url": settings.CONSENT_POLICY_URL},
        "purposes": purposes,
    }


def parse_browser_id(value: Any, *, required: bool) -> str | None:
    if value is None or value == "":
        if required:
            raise CookieInputError("missing_browser_id", "browser_id is required", {"browser_id": "required"})
        return None
    if not isinstance(value, str):
        raise CookieInputError("invalid_browser_id", "browser_id must be a string", {"browser_id": "invalid"})
    try:
        browser_id_hash(value)
    except ConsentError as exc:
        raise CookieInputError("invalid_browser_id", str(exc), {"browser_id": "invalid"}) from exc
    return value


def parse_choices(value: Any) -> dict[str, bool]:
    if value is None:
        raise CookieInputError("missing_choices", "choices is required", {"choices": "required"})
    if not isinstance(value, dict) or not value:
        raise CookieInputError(
            "invalid_choices",
            "choices must be a non-empty object {purpose_code: true|false}",
            {"choices": "invalid"},
        )
    if len(value) > MAX_CHOICES:
        raise CookieInputError("invalid_choices", "too many choices", {"choices": "too_many"})
    allowed = {purpose.code for purpose in api_selectors.cookie_purposes()}
    errors: dict[str, str] = {}
    for code, choice in value.items():
        if code not in allowed:
            errors[f"choices.{code}"[:120]] = "unknown_purpose"
        elif not isinstance(choice, bool):
            errors[f"choices.{code}"] = "not_boolean"
    if errors:
        kinds = set(errors.values())
        code = "unknown_purpose" if "unknown_purpose" in kinds else "invalid_choice"
        message = (
            f"choices may only name these purposes: {', '.join(sorted(allowed))}"
            if code == "unknown_purpose"
            else "each choice must be true or false"
        )
        raise CookieInputError(code, message, errors)
    return dict(value)


def parse_browser_secret(value: Any) -> str | None:
    """The browser's secret as sent by the widget: checked against the stored hash later."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 128:
        raise CookieInputError(
            "invalid_browser_secret", "browser_secret must be a string", {"browser_secret": "invalid"}
        )
    return value


@dataclass
class CookieChoicesResult:
    browser_id: str
    # Returned once, when this request registered the browser (docs/partners.md).
    browser_secret: str | None = None
    events: list[LedgerEvent] = field(default_factory=list)
    linked: list[LedgerEvent] = field(default_factory=list)

    @property
    def expires_at(self) -> datetime | None:
        ends = [event.valid_until for event in self.events if event.valid_until is not None]
        return min(ends) if ends else None


def cookie_choices_record(
    *,
    client: AbstractApplication,
    browser_id: str | None,
    choices: dict[str, bool],
    origin: str,
    signed_in_user: User | None = None,
    browser_secret: str | None = None,
) -> CookieChoicesResult:
    """Record one ledger event per choice for this browser, all or nothing.

    A browser without an id gets a new random one (UUID4). A browser met for the first time
    gets a secret, returned once (`result.browser_secret`); a browser that has one must send
    it (`BrowserProofError` otherwise: its id travels in authorization URLs, so knowing it
    must not let anyone change its choices). Browsers registered before secrets existed have
    none and are accepted without (they can never be attached to an account).
    The partner site the choice was made on is the event's partner (`collected_for`, so DPO
    searches by partner find it); its origin is kept as evidence (encrypted details).
    When `signed_in_user` is given (same-origin request from a signed-in resident), the
    browser's history is attached to the account afterwards (`subject_link_browser`), with
    the secret this request proved or was just given.
    """
    browser_id = browser_id or str(uuid.uuid4())
    result = CookieChoicesResult(browser_id=browser_id)
    evidence = {"collection_point": {"client_id": client.client_id, "origin": origin}}
    with transaction.atomic():
        result.browser_secret = browser_subject_register(browser_id=browser_id)
        if (
            result.browser_secret is None
            and browser_secret_check(browser_id=browser_id, browser_secret=browser_secret) is False
        ):
            raise BrowserProofError("browser_secret is missing or wrong for this browser_id")
        proof = result.browser_secret or browser_secret
        # Every choice in one ledger write (one counter update, one subject lock), in the
        # order of the codes, as one consent_record per choice would write them.
        result.events = consent_record_many(
            decisions=[
                (code, EventType.GIVEN if choices[code] else EventType.REFUSED) for code in sorted(choices)
            ],
            collection_method=CollectionMethod.COOKIE_WIDGET,
            browser_id=browser_id,
            collected_for=client,
            details=evidence,
        )
        if signed_in_user is not None and browser_secret_check(browser_id=browser_id, browser_secret=proof):
            result.linked = subject_link_browser(
                browser_id=browser_id, browser_secret=proof, user=signed_in_user
            )
    return result


def cookie_state(*, browser_id: str) -> dict[str, Any]:
    """Current choices of a browser (GET …/cookie/choices): silence is refusal."""
    states = api_selectors.browser_states(browser_id=browser_id)
    choices: dict[str, bool] = {}
    decisions: dict[str, Any] = {}
    decided = True
    ends = []
    for purpose in api_selectors.cookie_purposes():
        state = states.get(purpose.code)
        choices[purpose.code] = api_selectors.purpose_allowed(purpose, state)
        if state is None or state.renewal_required:
            if purpose.requires_consent:
                decided = False
            decisions[purpose.code] = None
            continue
        if state.valid_until is not None and purpose.requires_consent:
            ends.append(state.valid_until)
        decisions[purpose.code] = {
            "status": state.status,
            "decided_at": state.decided_at.isoformat(),
            "valid_until": state.valid_until.isoformat() if state.valid_until else None,
            "receipt_id": str(state.event_id),
        }
    return {
        "browser_id": browser_id,
        "decided": decided,
        "choices": choices,
        "decisions": decisions,
        "expires_at": min(ends).isoformat() if ends else None,
    }


def cookie_browser_link(*, browser_id: str, browser_secret: Any, user: User) -> list[LedgerEvent]:
    """Attach a browser's cookie choices to a signed-in resident's account, with its secret."""
    return subject_link_browser(browser_id=browser_id, browser_secret=browser_secret, user=user)


# --- link tickets: attaching a partner site's visitor at the end of an authorization ---------------
#
# Why a ticket (issue 9, finding 3). The browser id reaches us in the authorization URL
# (`consent_browser_id`), which anyone can build: an attacker registers a browser of their own,
# then opens `/authorize?…&consent_browser_id=<theirs>` in the victim's signed-in browser. So the
# authorization request never attaches anything. When it succeeds (a code is issued, never on
# `prompt=none`), the redirect to the partner carries a one-time ticket (`consent_link_ticket`) bound to
# the resident, the client and the browser the request named. Only the partner page in the
# resident's browser receives it; the widget there redeems it with the browser id and secret
# it keeps in its own storage (POST /consent/api/v1/cookie/attach). An attacker who started
# the request does not see the ticket; the victim's widget holds another browser, so its
# redemption fails; a ticket that leaks is useless without the named browser's secret, which
# never leaves the widget's storage except towards our API. Origin headers play no part.
# Tickets live in the cache every process shares (Redis, or the database without it).

LINK_TICKET_SECONDS = 10 * 60
_TICKET_CACHE = "ratelimit"  # shared by every process of a deployment (settings.CACHES)


class LinkTicketError(ValueError):
    """The link ticket is unknown, expired, used, or for another client or browser."""


def _ticket_key(ticket: str) -> str:
    return "consent-link-ticket:" + hashlib.sha256(ticket.encode()).hexdigest()


def cookie_link_ticket_issue(*, user: User, client_id: str, browser_id: Any) -> str | None:
    """A ticket to attach `browser_id` to `user`, or None if the browser cannot be attached.

    Called once a resident's own authorization request succeeded. Only a browser with a
    secret that made a choice on this client's site gets one (else nothing could redeem it).
    """

    try:
        browser_hash = browser_id_hash(browser_id)
    except ConsentError:
        return None
    if browser_secret_check(browser_id=browser_id, browser_secret="") is None:
        return None
    if not browser_seen_by_client(browser_id=browser_id, client_id=client_id):
        return None
    ticket = secrets.token_urlsafe(32)
    caches[_TICKET_CACHE].set(
        _ticket_key(ticket),
        {"user": str(user.pk), "client_id": client_id, "browser": browser_hash},
        LINK_TICKET_SECONDS,
    )
    return ticket


def cookie_link_ticket_redeem(
    *, ticket: Any, client_id: str, browser_id: str, browser_secret: Any
) -> tuple[User, list[LedgerEvent]]:
    """Attach the browser to the ticket's resident; the ticket is used up, even on failure.

    Raises LinkTicketError (bad ticket) or BrowserProofError (wrong secret); nothing written.
    """
    if not isinstance(ticket, str) or not ticket or len(ticket) > 128:
        raise LinkTicketError("link_ticket is required")
    cache = caches[_TICKET_CACHE]
    key = _ticket_key(ticket)
    bound = cache.get(key)
    # delete() reports whether this call removed it: of two concurrent uses, one wins.
    if not isinstance(bound, dict) or not cache.delete(key):
        raise LinkTicketError("unknown, expired or used link ticket")
    if bound.get("client_id") != client_id or bound.get("browser") != browser_id_hash(browser_id):
        raise LinkTicketError("this link ticket is for another client or browser")
    user_id = bound.get("user")
    user = User.objects.filter(pk=user_id, is_active=True).first() if user_id is not None else None
    if user is None:
        raise LinkTicketError("the account of this link ticket is gone")
    return user, subject_link_browser(browser_id=browser_id, browser_secret=browser_secret, user=user)
