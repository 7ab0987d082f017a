"""The registry of connector kinds: `kind` (PartnerConnector.kind) → connector class.

Filled in code, at import (connectors.library registers "library"); nothing registers at
run time. `connector_for(partner_connector)` builds the connector of a configured partner.
`resident_labels()` names what residents link with each kind (Mon compte's summary).
"""

from __future__ import annotations

from typing import Any

from connectors.protocol import Connector

_kinds: dict[str, type[Connector]] = {}


def register(cls: type[Connector]) -> type[Connector]:
    """Class decorator: add a connector kind (a kind is registered once)."""
    existing = _kinds.get(cls.kind)
    if existing is not None and existing is not cls:
        raise ValueError(f"connector kind {cls.kind!r} is already registered")
    _kinds[cls.kind] = cls
    return cls


def connector_class(kind: str) -> type[Connector] | None:
    return _kinds.get(kind)


def kinds() -> tuple[str, ...]:
    return tuple(sorted(_kinds))


def resident_labels() -> dict[str, Any]:
    """kind → what a resident links with it (Connector.resident_label), for the kinds that
    link accounts and name what (Connector.links_accounts), by kind."""
    return {
        kind: cls.resident_label
        for kind in kinds()
        if (cls := _kinds[kind]).links_accounts and cls.resident_label
    }
