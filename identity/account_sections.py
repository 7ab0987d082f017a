"""Mon compte: the sections each app owns, in one navigation and one summary page.

Every app that shows the resident something about their account registers a section from
its `AppConfig.ready()`: a title, the URL name of its page, its place in the navigation,
the text of the summary's link to it, and `summary(user)`: a few plain-language lines for
`/compte/` saying what we hold, who received it and what the resident allowed. The summary
page and the navigation (`{% account_nav %}`, identity/templatetags/account.py) read this
registry, so identity never imports the apps above it (identity.oidc, consent) to show
their sections.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the app config imports this module before the models exist
    from identity.models import User


@dataclass(frozen=True)
class AccountSection:
    key: str
    title: Any  # a lazy translation: the navigation's entry and the summary's heading
    url_name: str
    order: int
    summary: Callable[[User], list[str]]
    link: Any = ""  # a lazy translation: the summary's link to the page (none for the summary)


_lock = threading.Lock()
_sections: dict[str, AccountSection] = {}


def register(section: AccountSection) -> None:
    """Add (or replace, by key: app configs may be readied again in tests) a section."""
    with _lock:
        _sections[section.key] = section


def unregister(key: str) -> AccountSection | None:
    with _lock:
        return _sections.pop(key, None)


def sections() -> list[AccountSection]:
    with _lock:
        return sorted(_sections.values(), key=lambda section: (section.order, section.key))
