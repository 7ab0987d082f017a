"""The cookie-consent API's logic: what a partner's banner shows and recording a visitor's choice.

Views (consent/api/views.py) stay thin: they parse the request and call these functions.
Every choice is one ledger event (`consent.services.consent_record`, collection method
`cookie_widget`): `given` for true, `refused` for false. All the events of one submission
are written in one transaction: a bad purpose or value records nothing at all.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.conf import settings
from django.db import transaction

from consent.api import queries
from consent.models import CollectionMethod, EventType, LedgerEvent, Purpose
from consent.selectors import notice_current
from consent.services import ConsentError, browser_id_hash, consent_record, subject_link_browser
from identity.models import Client, User

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


def cookie_config(client: Client) -> dict[str, Any]:
    """What a partner site's banner asks, in French and English (GET …/cookie/config)."""
    controller = settings.CONSENT_CONTROLLER
    purposes = []
    for purpose in queries.cookie_purposes():
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
    notice = queries.global_notice()
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
    allowed = {purpose.code for purpose in queries.cookie_purposes()}
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


@dataclass
class CookieChoicesResult:
    browser_id: str
    events: list[LedgerEvent] = field(default_factory=list)
    linked: list[LedgerEvent] = field(default_factory=list)

    @property
    def expires_at(self) -> datetime | None:
        ends = [event.valid_until for event in self.events if event.valid_until is not None]
        return min(ends) if ends else None


def cookie_choices_record(
    *,
    client: Client,
    browser_id: str | None,
    choices: dict[str, bool],
    origin: str,
    signed_in_user: User | None = None,
) -> CookieChoicesResult:
    """Record one ledger event per choice for this browser, all or nothing.

    A browser without an id gets a new random one (UUID4). The partner site the choice was
    made on is the event's partner (`collected_for`, so DPO searches by partner find it);
    its origin is kept as evidence (encrypted details).
    When `signed_in_user` is given (same-origin request from a signed-in resident), the
    browser's history is attached to the account afterwards (`subject_link_browser`).
    """
    browser_id = browser_id or str(uuid.uuid4())
    result = CookieChoicesResult(browser_id=browser_id)
    evidence = {"collection_point": {"client_id": client.client_id, "origin": origin}}
    with transaction.atomic():
        for code in sorted(choices):
            result.events.append(
                consent_record(
                    purpose_code=code,
                    event_type=EventType.GIVEN if choices[code] else EventType.REFUSED,
                    collection_method=CollectionMethod.COOKIE_WIDGET,
                    browser_id=browser_id,
                    collected_for=client,
                    details=evidence,
                )
            )
        if signed_in_user is not None:
            result.linked = subject_link_browser(browser_id=browser_id, user=signed_in_user)
    return result


def cookie_state(*, browser_id: str) -> dict[str, Any]:
    """Current choices of a browser (GET …/cookie/choices): silence is refusal."""
    states = queries.browser_states(browser_id=browser_id)
    choices: dict[str, bool] = {}
    decisions: dict[str, Any] = {}
    decided = True
    ends = []
    for purpose in queries.cookie_purposes():
        state = states.get(purpose.code)
        choices[purpose.code] = queries.purpose_allowed(purpose, state)
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


def cookie_browser_link(*, browser_id: str, user: User) -> list[LedgerEvent]:
    """Attach a browser's cookie choices to a signed-in resident's account."""
    return subject_link_browser(browser_id=browser_id, user=user)
