"""Partner access tokens as profiles sees them: a tiny registry filled by identity.oidc.

profiles never imports identity.oidc (pyproject's import contracts), yet its partner
endpoints (profiles/api/) accept a resident's access token from a partner back-end. The
protocol layer registers the one function that reads such a token, from
`IdentityConfig.ready()` (identity/oidc/profiles_tokens.py):

    register_token_reader(reader)   # reader(raw_token) -> PartnerToken | None

`partner_token_read(raw)` asks it: None for anything but a live resident access token of
ours (bad form or signature, expired, revoked, another resource's, a client's own token,
a deactivated resident), and None when no reader is registered.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from identity.models import User


@dataclass(frozen=True)
class PartnerToken:
    """A live resident access token, as the protocol layer vouches for it.

    `release` maps each scope of the token to whether its claims may go to this partner now:
    the resident's sharing consent for this partner and these scopes (the ledger purpose
    `sharing_purpose`) AND the purpose the scope's data is kept under, when its claim
    provider names one (identity.oidc.sharing: the same rule as the ID token and userinfo).
    """

    user: User
    client_id: str
    client_name: str
    scopes: frozenset[str]
    sharing_granted: bool
    sharing_purpose: str | None
    release: Mapping[str, bool] = field(default_factory=dict)

    def released(self, scope: str) -> bool:
        return scope in self.scopes and bool(self.release.get(scope))


TokenReader = Callable[[str], PartnerToken | None]

_lock = threading.Lock()
_readers: list[TokenReader] = []


def register_token_reader(reader: TokenReader) -> None:
    """Install the reader of partner access tokens (idempotent: one reader at a time)."""
    with _lock:
        _readers[:] = [reader]


def partner_token_read(raw: str) -> PartnerToken | None:
    """The live resident token `raw`, or None (see the module docstring)."""
    with _lock:
        reader = _readers[0] if _readers else None
    if reader is None or not isinstance(raw, str) or not raw or len(raw) > 8192:
        return None
    return reader(raw)
