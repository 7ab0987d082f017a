"""Fixtures for the profiles tests: residents deciding the personalisation purposes."""

from __future__ import annotations

from typing import Any

import pytest

from consent.services import resident_decision_record
from tests.test_rights_registry import everything  # noqa: F401  (fixture, re-exported)

DECLARED = "personalisation-declared"
BROWSING = "personalisation-browsing"
NEWS = "service-news-email"


def decide(user: Any, purpose_code: str, grant: bool) -> Any:
    """The resident's own click in Mon compte › Consentements (the real service)."""
    return resident_decision_record(user=user, purpose_code=purpose_code, grant=grant)


@pytest.fixture
def consenting(resident: Any, signing_keys: Any) -> Any:
    """A resident who granted the declared and browsing personalisation and the news email."""
    for code in (DECLARED, BROWSING, NEWS):
        decide(resident, code, True)
    return resident
