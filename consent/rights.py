"""Registry of data-rights providers (DESIGN.md: export and erasure orchestration).

Each app that holds personal data registers, in its `AppConfig.ready()`, a provider with
two callables: `export(user) -> dict` (its part of the Art. 15/20 archive) and
`erase(user) -> ErasureReport` (its part of an Art. 17 erasure). The orchestration (export
jobs, the erasure flow with the outbox) calls `export_all` / `erase_all`; this module does
not import any other app, so the dependency direction stays one way.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class ErasureReport:
    provider: str
    erased: list[str] = field(default_factory=list)
    # What the law obliges us to keep (e.g. proof of consent, Art. 7(1) / 17(3)(e)), kept pseudonymised.
    kept: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RightsProvider:
    name: str
    export: Callable[[Any], dict[str, Any]]
    erase: Callable[[Any], ErasureReport]


_lock = threading.Lock()
_providers: dict[str, RightsProvider] = {}


def register_provider(
    name: str, *, export: Callable[[Any], dict[str, Any]], erase: Callable[[Any], ErasureReport]
) -> None:
    """Register (or replace, e.g. on autoreload) the provider called `name`."""
    with _lock:
        _providers[name] = RightsProvider(name=name, export=export, erase=erase)


def providers() -> list[RightsProvider]:
    with _lock:
        return [_providers[name] for name in sorted(_providers)]


def export_all(user: Any) -> dict[str, dict[str, Any]]:
    return {provider.name: provider.export(user) for provider in providers()}


def erase_all(user: Any) -> list[ErasureReport]:
    return [provider.erase(user) for provider in providers()]
