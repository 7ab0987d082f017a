"""Data that exists only by a consent, erased the moment the consent ends (GDPR Art. 17(1)(b)).

An app that stores data under a consent-based purpose (profiles: the declared profile under
`personalisation-declared`, the inferred interests under `personalisation-browsing`)
registers a **holder** for that purpose from its `AppConfig.ready()`:

    purpose_data.register_holder(PurposeDataHolder(
        name="profiles.declared", purpose_code="personalisation-declared", erase=erase_declared,
    ))

`erase(subject) -> dict` deletes everything the holder keeps under the purpose for one
`DataSubject` (an account, or a browser known only by its id's hash) and returns a summary
of what went: field names and counts, never the values. It runs inside the caller's
transaction and must not write to the ledger.

consent calls the holders of an event's purpose, in the transaction that appends the event:

- when the event leaves the purpose not granted (`withdrawn`, `refused`, `revoked`, and the
  `expired` events of `consent_expire_lapsed`): the data goes at once, and the summary is
  recorded in the event's details (encrypted with the subject's key, like all details) under
  `"erased"`, so the ledger proves both the withdrawal and the erasure it caused;
- when a grant follows a state that was not a grant (`given` after a withdrawal, a refusal
  or an expiry; `renewed` after a material notice change): granting again starts empty.

Between an expiry (or a material notice change) and the next event, the data is not used:
every read goes through the gate (consent.gate); the holder's own maintenance erases it for
good (profiles: `manage.py profiles_maintain`, run by cron).

A batch of decisions (`services.consent_record_many`) erases the data of all its ended purposes
with one call per holder (`erase_for_many`): a holder that also gives `erase_many(subject,
purpose_codes) -> {purpose_code: summary}` under a `group` name is called once for all the
batch's purposes of the holders of that group (profiles: the declared fields of every ended
purpose in one statement); the others are called with `erase` once per purpose, as for one
decision. The summaries are those the single decisions would record, event by event.

A single decision asks its purpose's holders whether they hold anything **before** calling them:
a holder may give `held(subject) -> (sql, params)`, one SQL boolean expression that is false only
when `erase(subject)` would find nothing (profiles: whether the resident has a declared profile
at all; whether any interest or correction row is theirs). consent puts the expressions of the
purpose's holders into the statement that reads the decision's context under the subject's lock
(`held_columns`; no statement of its own) and calls only the holders that answered true, or gave
no `held`: a decision that erases nothing costs no statement of the holders. An expression may
only read (it runs inside that read) and must never answer false where data is held.

A browser's data joins an account only by the browser's proof (`subject_link_browser`);
holders that keep browser data register a **browser-link listener** to move it then, in the
same transaction: `register_browser_link_listener(name, listener)`, `listener(browser_hash,
user)`.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class DataSubject:
    """Whose data: an account (`user_id`) or a browser without an account (`browser_hash`,
    the keyed hash of the cookie widget's browser id: consent.services.browser_id_hash)."""

    user_id: Any = None
    browser_hash: str = ""

    def __post_init__(self) -> None:
        if (self.user_id is None) == (not self.browser_hash):
            raise ValueError("a data subject is exactly one of an account or a browser")


@dataclass(frozen=True)
class PurposeDataHolder:
    name: str
    purpose_code: str
    erase: Callable[[DataSubject], dict[str, Any]]
    # Optional, for batches: holders sharing a `group` and its `erase_many` are erased once for
    # all of a batch's purposes; `erase_many` returns the summary of each purpose (empty or
    # absent when nothing went), as `erase` would for each in turn.
    group: str = ""
    erase_many: Callable[[DataSubject, tuple[str, ...]], dict[str, dict[str, Any]]] | None = None
    # Optional, for single decisions: whether anything may be held for a subject, as one SQL
    # boolean expression and its parameters (false: `erase` would erase nothing); see above.
    held: Callable[[DataSubject], tuple[str, Sequence[Any]]] | None = None

    def __post_init__(self) -> None:
        if bool(self.group) != (self.erase_many is not None):
            raise ValueError("a holder gives both a group and erase_many, or neither")


class PurposeDataError(ValueError):
    """A holder that cannot be registered (its name is taken)."""


_lock = threading.Lock()
_holders: dict[str, PurposeDataHolder] = {}
_link_listeners: dict[str, Callable[[str, Any], None]] = {}


def register_holder(holder: PurposeDataHolder) -> None:
    global _holders
    with _lock:
        if holder.name in _holders:
            raise PurposeDataError(f"purpose data holder {holder.name!r} is already registered")
        if any(
            h.group == holder.group and h.erase_many != holder.erase_many
            for h in _holders.values()
            if h.group
        ):
            raise PurposeDataError(f"the holders of group {holder.group!r} share one erase_many")
        _holders = {**_holders, holder.name: holder}


def unregister_holder(name: str) -> None:
    """Tests only; a no-op when absent."""
    global _holders
    with _lock:
        _holders = {key: value for key, value in _holders.items() if key != name}


def holders(purpose_code: str | None = None) -> list[PurposeDataHolder]:
    return [h for h in _holders.values() if purpose_code is None or h.purpose_code == purpose_code]


def held_purpose_codes() -> set[str]:
    return {holder.purpose_code for holder in _holders.values()}


@dataclass(frozen=True)
class HeldColumns:
    """The holders of one purpose that give `held`, and their expressions as extra columns of a
    SELECT (`sql`: ", (expr1), (expr2)", empty when there are none) with their parameters."""

    names: tuple[str, ...]
    sql: str
    params: tuple[Any, ...]


def held_columns(*, purpose_code: str, subject: DataSubject) -> HeldColumns:
    """The `held` expressions of `purpose_code`'s holders for `subject`, in the registry's order."""
    names: list[str] = []
    columns: list[str] = []
    params: list[Any] = []
    for holder in holders(purpose_code):
        if holder.held is not None:
            sql, values = holder.held(subject)
            names.append(holder.name)
            columns.append(f", ({sql})")
            params.extend(values)
    return HeldColumns(tuple(names), "".join(columns), tuple(params))


def erase_for(
    *, purpose_code: str, subject: DataSubject, nothing_held: Collection[str] = ()
) -> dict[str, Any]:
    """Run every holder of `purpose_code` for `subject` (caller's transaction), but those named
    in `nothing_held` (their `held` answered false in this transaction); the summaries of those
    that erased something, by holder name."""
    erased: dict[str, Any] = {}
    for holder in holders(purpose_code):
        if holder.name in nothing_held:
            continue
        summary = holder.erase(subject)
        if summary:
            erased[holder.name] = summary
    return erased


def erase_for_many(*, purpose_codes: Sequence[str], subject: DataSubject) -> dict[str, dict[str, Any]]:
    """`erase_for` of each code (caller's transaction), with one call per holder for the batch:
    a group's `erase_many` once with its holders' codes among `purpose_codes`, every other
    holder's `erase` once. {purpose_code: {holder name: summary}}, only what erased something."""
    codes = tuple(dict.fromkeys(purpose_codes))
    chosen = [holder for holder in _holders.values() if holder.purpose_code in codes]
    summaries: dict[str, dict[str, Any]] = {}  # by holder name
    grouped: dict[str, list[PurposeDataHolder]] = {}
    for holder in chosen:
        if holder.erase_many is not None:
            grouped.setdefault(holder.group, []).append(holder)
        else:
            summaries[holder.name] = holder.erase(subject)
    for members in grouped.values():
        erase_many = members[0].erase_many
        assert erase_many is not None  # a group's holders have it
        held = {holder.purpose_code for holder in members}
        by_code = erase_many(subject, tuple(code for code in codes if code in held))
        for holder in members:
            summaries[holder.name] = by_code.get(holder.purpose_code) or {}
    erased: dict[str, dict[str, Any]] = {}
    for code in codes:  # each purpose's summaries in the registry's order, as erase_for gives them
        mine = {h.name: summaries[h.name] for h in chosen if h.purpose_code == code and summaries[h.name]}
        if mine:
            erased[code] = mine
    return erased


def register_browser_link_listener(name: str, listener: Callable[[str, Any], None]) -> None:
    global _link_listeners
    with _lock:
        if name in _link_listeners:
            raise PurposeDataError(f"browser-link listener {name!r} is already registered")
        _link_listeners = {**_link_listeners, name: listener}


def unregister_browser_link_listener(name: str) -> None:
    global _link_listeners
    with _lock:
        _link_listeners = {key: value for key, value in _link_listeners.items() if key != name}


def browser_linked(*, browser_hash: str, user: Any) -> None:
    """A browser was attached to `user` with its proof: each listener moves its data."""
    for listener in _link_listeners.values():
        listener(browser_hash, user)
