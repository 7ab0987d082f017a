"""Pushed authorization requests (RFC 9126): storing them and resolving their request_uri.

The client POSTs its authorization parameters to `/par` (authenticated as at the token
endpoint) and receives `urn:ietf:params:oauth:request_uri:<random>`, valid 60 seconds.
Only the SHA-256 of the random part is stored, with the client it belongs to.

Used once: the first `/authorize?client_id=…&request_uri=…` consumes it. When that request
has to send the browser to the sign-in page or to a second-factor step-up, the parameters
are kept in this browser's session for a few minutes so that it can come back to the same
URL once, and only once; any other browser, or any other use, gets `invalid_request_uri`.
The parameters are kept whole, `prompt=login` and `max_age` included: the authorization
view decides from the moment it sent the browser to sign in whether the sign-in it asked for
happened (identity/oidc/views/authorize.py, `_needs_login`).
"""

from __future__ import annotations

import hashlib
import secrets
import time
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.http import HttpRequest, QueryDict
from django.utils import timezone

from identity.oidc.constants import PAR_EXPIRES_IN, PAR_URN_PREFIX
from identity.oidc.models import PushedAuthorizationRequest

SESSION_KEY = "oidc.par"
RESUME_SECONDS = 10 * 60
MAX_RESUMABLE = 5


class RequestUriError(ValueError):
    """The request_uri cannot be used (unknown, another client's, expired or used)."""


def is_par_urn(value: str | None) -> bool:
    return bool(value) and str(value).startswith(PAR_URN_PREFIX)


@transaction.atomic
def par_store(*, client: Any, parameters: dict[str, str]) -> tuple[str, int]:
    """Keep a validated authorization request; returns (request_uri, expires_in)."""
    reference = secrets.token_urlsafe(32)
    now = timezone.now()
    PushedAuthorizationRequest.objects.create(
        reference=reference,
        client=client,
        parameters=parameters,
        created_at=now,
        expires_at=now + timedelta(seconds=PAR_EXPIRES_IN),
    )
    # Nothing useful stays once expired: keep the table small.
    PushedAuthorizationRequest.objects.filter(expires_at__lt=now - timedelta(minutes=5)).delete()
    return PAR_URN_PREFIX + reference, PAR_EXPIRES_IN


def _session_key(reference: str) -> str:
    return hashlib.sha256(reference.encode("utf-8")).hexdigest()


def par_resolve(request: HttpRequest, *, client_id: str, request_uri: str) -> QueryDict:
    """The pushed parameters behind request_uri, for this client; raises RequestUriError."""
    if not client_id:
        raise RequestUriError("client_id is required with request_uri.")
    reference = request_uri[len(PAR_URN_PREFIX) :]
    if not reference:
        raise RequestUriError("Unknown request_uri.")
    stash: dict[str, Any] = dict(request.session.get(SESSION_KEY) or {})
    resumable = stash.pop(_session_key(reference), None)
    if resumable is not None:
        request.session[SESSION_KEY] = stash
        if resumable.get("client_id") == client_id and resumable.get("until", 0) > time.time():
            return _as_querydict(resumable["params"], client_id)
        raise RequestUriError("This request_uri was already used.")

    record = PushedAuthorizationRequest.objects.select_related("client").filter(reference=reference).first()
    if record is None or record.client.client_id != client_id:
        raise RequestUriError("Unknown request_uri for this client.")
    if record.expires_at <= timezone.now():
        raise RequestUriError("This request_uri has expired.")
    claimed = PushedAuthorizationRequest.objects.filter(pk=record.pk, used_at__isnull=True).update(
        used_at=timezone.now()
    )
    if not claimed:
        raise RequestUriError("This request_uri was already used.")
    return _as_querydict(record.parameters, client_id)


def par_keep_for_resume(request: HttpRequest, *, request_uri: str, params: QueryDict) -> None:
    """Let this browser come back once to request_uri (after sign-in or step-up)."""
    now = time.time()
    stash = {
        key: value
        for key, value in dict(request.session.get(SESSION_KEY) or {}).items()
        if value.get("until", 0) > now
    }
    if len(stash) >= MAX_RESUMABLE:
        for old in sorted(stash, key=lambda k: stash[k]["until"])[: len(stash) - MAX_RESUMABLE + 1]:
            stash.pop(old)
    stash[_session_key(request_uri[len(PAR_URN_PREFIX) :])] = {
        "client_id": params.get("client_id", ""),
        "params": {name: params[name] for name in params},
        "until": now + RESUME_SECONDS,
    }
    request.session[SESSION_KEY] = stash


def _as_querydict(parameters: dict[str, str], client_id: str) -> QueryDict:
    query = QueryDict(mutable=True)
    for name, value in parameters.items():
        query[name] = value
    query["client_id"] = client_id
    return query
