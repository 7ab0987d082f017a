"""Registry of data-rights providers and the export / erasure orchestration.

See docs/architecture.md, "Rights providers".

Every app that stores data about a resident registers, from its `AppConfig.ready()`, one
provider per module that owns such data:

- `export(user) -> dict`: its section of the Art. 15/20 archive. JSON-serialisable, and
  never a secret (no password or token hashes, no TOTP secrets, no keys): the archive is
  handed to the resident and may be kept anywhere.
- `erase(user) -> ErasureReport`: its part of an Art. 17 erasure: delete or neutralise,
  and say what the law obliges us to keep. Apps below consent in the layers (identity
  accounts, MFA, FranceConnect) may not import this module: they return a mapping with
  the fields of `ErasureReport` (`erased`, `kept`, `details`), turned into one here.
- `models`: the labels ("app_label.ModelName") of the models whose rows about a resident
  it covers. tests/test_rights_registry.py fails when a model with a foreign key to the
  user model is covered by no provider.
- `order`: when its erasure runs (lowest first; ties by name). The order matters: the
  sessions end and partners are told (back-channel logout, through the outbox) before
  the tokens and factors go; the outbox is looked at once those messages are queued;
  the account row goes last. Exports run in the same order.

`rights_export(user)` runs every export provider and merges their sections under a
versioned envelope; `rights_erase(user)` runs every erasure provider in order, inside one
transaction (the outbox messages the erasure queues exist if and only if it commits), and
returns a `RightsErasureReport`. This module imports no other app of the project: the
apps register into it, so the dependency direction stays one way.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime
from importlib import import_module
from typing import Any

from django.db import transaction
from django.utils import timezone

EXPORT_FORMAT = "compte-unique-metropolitain/rights-export"
EXPORT_VERSION = 1

# Erasure order of the project's providers (lowest first). Gaps leave room for the
# apps still to come (profiles, partner connectors).
ORDER_PARTNERS = 10  # identity.oidc: sessions end, partners told, tokens and grants revoked
ORDER_FACTORS = 20  # mfa
ORDER_FRANCECONNECT = 30  # franceconnect
ORDER_OUTBOX = 40  # connectors: after every message the erasure queues
ORDER_CONSENT = 50  # consent: crypto-shredding
ORDER_ACCOUNT = 90  # identity: the account row itself, last
ORDER_DEFAULT = 50


@dataclass
class ErasureReport:
    """What one provider did in an erasure."""

    provider: str
    erased: list[str] = field(default_factory=list)
    # What the law obliges us to keep (e.g. proof of consent, Art. 7(1) / 17(3)(e)), kept pseudonymised.
    kept: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass
class RightsErasureReport:
    """What `rights_erase` did: one `ErasureReport` per provider, in the order they ran."""

    user_id: str
    started_at: datetime
    finished_at: datetime
    reports: list[ErasureReport] = field(default_factory=list)

    def report(self, provider: str) -> ErasureReport:
        """The report of the provider called `provider` (KeyError if it did not run)."""
        for report in self.reports:
            if report.provider == provider:
                return report
        raise KeyError(provider)

    def as_dict(self) -> dict[str, Any]:
        """JSON-serialisable (for a status page, an email, the DPO's register)."""
        return {
            "user_id": self.user_id,
            "started_at": self.started_at.isoformat(),
            "finished_at": self.finished_at.isoformat(),
            "providers": [asdict(report) for report in self.reports],
        }


@dataclass(frozen=True)
class RightsProvider:
    name: str
    export: Callable[[Any], dict[str, Any]]
    erase: Callable[[Any], ErasureReport | Mapping[str, Any]]
    models: tuple[str, ...] = ()
    order: int = ORDER_DEFAULT


class RightsError(ValueError):
    """A provider broke the contract (bad declaration, non-serialisable export)."""


_lock = threading.Lock()
_providers: dict[str, RightsProvider] = {}


def register_provider(
    name: str,
    *,
    export: Callable[[Any], dict[str, Any]],
    erase: Callable[[Any], ErasureReport | Mapping[str, Any]],
    models: Iterable[str] = (),
    order: int = ORDER_DEFAULT,
) -> None:
    """Register (or replace, e.g. on autoreload) the provider called `name`."""
    labels = tuple(models)
    for label in labels:
        if label.count(".") != 1:
            raise RightsError(f"{name}: model {label!r} is not an 'app_label.ModelName' label")
    with _lock:
        _providers[name] = RightsProvider(name=name, export=export, erase=erase, models=labels, order=order)


def unregister_provider(name: str) -> RightsProvider | None:
    """Remove the provider called `name` (e.g. an app switched off); the one removed, if any."""
    with _lock:
        return _providers.pop(name, None)


def register_module(*paths: str) -> None:
    """Register the provider that each module in `paths` declares (one line in a ready()).

    The module defines `NAME`, `ORDER`, `MODELS`, `export(user)` and `erase(user)`: it
    needs to import nothing from here, which lets apps below consent declare theirs.
    """
    for path in paths:
        module = import_module(path)
        register_provider(
            module.NAME, export=module.export, erase=module.erase, models=module.MODELS, order=module.ORDER
        )


def providers() -> list[RightsProvider]:
    """Every registered provider, in erasure order (then by name)."""
    with _lock:
        return sorted(_providers.values(), key=lambda provider: (provider.order, provider.name))


def covered_models() -> dict[str, list[str]]:
    """Model label -> names of the providers that declare it."""
    covered: dict[str, list[str]] = {}
    for provider in providers():
        for label in provider.models:
            covered.setdefault(label, []).append(provider.name)
    return covered


def _saved_user(user: Any) -> None:
    if (
        getattr(user, "pk", None) is None
        or not getattr(user, "is_authenticated", False)
        or not type(user)._default_manager.filter(pk=user.pk).exists()
    ):
        raise RightsError("user must be a saved resident account")


def export_all(user: Any) -> dict[str, dict[str, Any]]:
    """Every provider's section, by provider name (no envelope, no checks)."""
    return {provider.name: provider.export(user) for provider in providers()}


def rights_export(user: Any) -> dict[str, Any]:
    """The resident's data held by every provider, merged (GDPR Art. 15 and 20).

    `{"format", "version", "generated_at", "user_id", "sections": {provider name: section}}`.
    Every section is checked to be JSON-serialisable (RightsError names the provider if not).
    """
    _saved_user(user)
    sections: dict[str, Any] = {}
    for provider in providers():
        section = provider.export(user)
        try:
            json.dumps(section)
        except (TypeError, ValueError) as exc:
            raise RightsError(f"{provider.name}: export is not JSON-serialisable ({exc})") from None
        sections[provider.name] = section
    return {
        "format": EXPORT_FORMAT,
        "version": EXPORT_VERSION,
        "generated_at": timezone.now().isoformat(),
        "user_id": str(user.pk),
        "sections": sections,
    }


def _as_report(name: str, result: ErasureReport | Mapping[str, Any]) -> ErasureReport:
    if isinstance(result, ErasureReport):
        return result
    unknown = set(result) - {"erased", "kept", "details"}
    if unknown:
        raise RightsError(f"{name}: erase returned unknown fields {sorted(unknown)}")
    return ErasureReport(
        provider=name,
        erased=list(result.get("erased", [])),
        kept=list(result.get("kept", [])),
        details=dict(result.get("details", {})),
    )


def erase_all(user: Any) -> list[ErasureReport]:
    """Every provider's erasure, in order, without a transaction of its own."""
    return [_as_report(provider.name, provider.erase(user)) for provider in providers()]


def rights_erase(user: Any) -> RightsErasureReport:
    """Erase the resident's data with every provider, in order, in one transaction (Art. 17).

    Either every provider's erasure is committed, with the outbox messages it queued
    (back-channel logouts), or none is. Outside the database, ending a session deletes
    its Django session from the session store (a cache when Redis is configured): that
    signing out stays even if the erasure is rolled back.
    """
    _saved_user(user)
    user_id = str(user.pk)
    started_at = timezone.now()
    with transaction.atomic():
        reports = erase_all(user)
    return RightsErasureReport(
        user_id=user_id, started_at=started_at, finished_at=timezone.now(), reports=reports
    )
