"""Signal receivers of the FranceConnect app: they only call a service (docs/architecture.md).

django.contrib.auth sends `user_logged_in` / `user_logged_out` from every login() and
logout(), whichever page or service signs the browser in or out: the pending
FranceConnect identity is kept or dropped there (identity.franceconnect.services).
"""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from identity.franceconnect import services


def on_user_logged_in(
    sender: Any, request: HttpRequest | None = None, user: Any = None, **kwargs: Any
) -> None:
    if user is not None:
        services.pending_on_sign_in(request=request, user=user)


def on_user_logged_out(sender: Any, request: HttpRequest | None = None, **kwargs: Any) -> None:
    services.pending_drop(request=request)
