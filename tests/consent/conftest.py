"""Fixtures for the consent ledger tests."""

from __future__ import annotations

from typing import Any

import pytest

from consent.models import ConsentState, LedgerEvent, LedgerHead, Subject, TreeHead
from identity.models import AuditEvent
from tests.connectors.conftest import run_worker  # noqa: F401  (fixture, re-exported)
from tests.test_rights_registry import everything  # noqa: F401  (fixture, re-exported)


@pytest.fixture
def ledger_ready(signing_keys: Any) -> Any:
    """Signing keys exist (receipts and tree heads are signed with the ES256 service key)."""
    return signing_keys


@pytest.fixture
def snapshot() -> Any:
    """Counts of every table a consent write may touch, to prove that nothing was written."""

    def take() -> dict[str, int]:
        head = LedgerHead.objects.filter(pk=1).first()
        return {
            "events": LedgerEvent.objects.count(),
            "subjects": Subject.objects.count(),
            "states": ConsentState.objects.count(),
            "tree_heads": TreeHead.objects.count(),
            "audit": AuditEvent.objects.count(),
            "head_size": head.size if head else 0,
        }

    return take
