"""Who is signed in on a request, with the type the code relies on.

Django and DRF give `request.user` as `User | AnonymousUser`. Behind `login_required`,
the staff gates of identity.reauth or DRF's `IsAuthenticated` (and the permissions built on
it) it is always one of our users: `request_user` says so to the type checker and refuses
to go on if a view is ever reached without one. `request_user_or_none` is for the audit
rows, whose acting user is absent when nobody is signed in.
"""

from __future__ import annotations

from django.http import HttpRequest
from rest_framework.request import Request

from identity.models import User


def request_user(request: HttpRequest | Request) -> User:
    """The signed-in user of a request that requires one (login_required, staff gates,
    IsAuthenticated): an error, never an anonymous user, if it has none."""
    user = request.user
    if not isinstance(user, User):
        raise TypeError("this view requires a signed-in user")
    return user


def request_user_or_none(request: HttpRequest | Request) -> User | None:
    """The signed-in user, or None (an anonymous visitor)."""
    user = request.user
    return user if isinstance(user, User) else None
