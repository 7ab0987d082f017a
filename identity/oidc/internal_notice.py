"""The information page of internal metropolitan services (public task, GDPR Art. 6(1)(e)).

Clients the operator marks internal get no consent screen: their processing rests on
Nantes Métropole's public-task mission, not on consent (identity/oidc/sharing.py). The
resident is still told (issue 4: "…may be exempt, and the resident is told"): the first
time they are sent to an internal service, and again when it asks for scopes beyond those
they were told about, the authorization endpoint shows a page naming the service, what
it will receive (in plain words), the legal basis and why no consent is asked, with a
link to the privacy policy and a single "Continuer" button (a CSRF-protected POST) that
resumes the authorization.

- What was shown is recorded per resident and service (`identity.InternalServiceNotice`:
  the union of the scopes noticed, first and last time) when the resident presses
  "Continuer". It is a record of information given, not a consent: nothing is written to
  the consent ledger, and the record never decides whether claims are released (the
  ledger still does: an objection recorded there stops the claims).
- `prompt=none` with a notice never shown (or a scope never noticed) still answers
  silently with a code, and records nothing, so the page is shown at the next interactive
  request. `prompt=none` forbids any page (OIDC Core §3.1.2.1), but its errors are for
  what the request needs and cannot get silently (a sign-in, a consent, an interaction
  the processing depends on): this page is none of them. The processing does not depend
  on it (public task, Art. 6(1)(e), not consent); the information owed (Art. 13) is
  the metropolitan privacy policy, which this page repeats at the point of use; and
  answering `interaction_required` would break the silent session checks and token
  renewals of internal services without protecting the resident any better.
- `prompt=consent` shows the page again: it is what stands for the consent screen here.
"""

from __future__ import annotations

import secrets
import time
from typing import Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, transaction
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views import View
from django.views.decorators.cache import never_cache

from common.kept_cursor import kept_fetch as prepared_fetch
from identity.client_cache import client_by_client_id
from identity.oidc.authorization_request import PENDING_CREDENTIALS, AuthorizationMixin
from identity.oidc.errors import error_page
from identity.oidc.models import InternalServiceNotice
from identity.oidc.sharing import describe_scopes

NOTICE_SESSION_KEY = "oidc.pending_internal_notices"
MAX_PENDING = 5
PENDING_LIFETIME_SECONDS = 30 * 60


# --- reads and writes ---------------------------------------------------------------------------


_covers_statement: list[str] = []


def _covers_sql() -> str:
    """The one statement of internal_notice_covers, written once per process from the
    model's metadata (identifiers quoted by the connection, values as parameters)."""
    if not _covers_statement:
        quote = connections[DEFAULT_DB_ALIAS].ops.quote_name
        meta = InternalServiceNotice._meta
        fields: dict[str, Any] = {name: meta.get_field(name) for name in ("scopes", "user", "client")}
        column = {name: quote(field.column) for name, field in fields.items()}
        _covers_statement.append(
            f"SELECT {column['scopes']} FROM {quote(meta.db_table)} "  # noqa: S608 - metadata
            f"WHERE {column['user']} = %s AND {column['client']} = %s LIMIT 1"
        )
    return _covers_statement[0]


def internal_notice_covers(*, user: Any, client: Any, scopes: list[str] | set[str]) -> bool:
    """Was this resident already told about every one of these scopes at this service?

    Read at every authorization of an internal service: one statement written once per
    process, run on the default database's kept cursor (consent.prepared.prepared_fetch,
    as the consent gate is; prepared where the deployment allows it) instead of a query
    the ORM compiled each time (issue 14). One row at most per resident and service
    (internalservicenotice_unique).
    """
    connection = connections[DEFAULT_DB_ALIAS]
    meta = InternalServiceNotice._meta
    user_field: Any = meta.get_field("user")
    client_field: Any = meta.get_field("client")
    # The keys as the ORM sends them (a UUID is hex text on SQLite).
    params = [
        user_field.get_db_prep_value(user.pk, connection),
        client_field.get_db_prep_value(client.pk, connection),
    ]
    row = prepared_fetch(_covers_sql(), params)
    return row is not None and set(scopes) <= set(row[0].split())


@transaction.atomic
def internal_notice_record(*, user: Any, client: Any, scopes: list[str] | set[str]) -> Any:
    """The resident saw the page for these scopes (added to those noticed before)."""

    now = timezone.now()
    notice, created = InternalServiceNotice.objects.select_for_update().get_or_create(
        user=user,
        client=client,
        defaults={"scopes": " ".join(sorted(set(scopes))), "first_shown_at": now, "last_shown_at": now},
    )
    if not created:
        notice.scopes = " ".join(sorted(notice.scope_set | set(scopes)))
        notice.last_shown_at = now
        notice.save(update_fields=["scopes", "last_shown_at"])
    return notice


# --- the page -----------------------------------------------------------------------------------


def internal_notice_page(
    request: HttpRequest, client: Any, scopes: list[str], credentials: dict[str, Any], prompt: set[str]
) -> HttpResponse | None:
    """The information page when the resident must see it; None to go on with the request."""
    if "none" in prompt:
        return None  # silent (see the module docstring); shown at the next interactive request
    if "consent" not in prompt and internal_notice_covers(user=request.user, client=client, scopes=scopes):
        return None
    pending = request.session.get(NOTICE_SESSION_KEY, {})
    if len(pending) >= MAX_PENDING:
        oldest = sorted(pending, key=lambda key: pending[key]["created"])[: len(pending) - MAX_PENDING + 1]
        for key in oldest:
            pending.pop(key, None)
    pending_id = secrets.token_urlsafe(16)
    pending[pending_id] = {
        "created": int(time.time()),
        "user": str(request.user.pk),
        "scopes": list(scopes),
        "credentials": {key: value for key, value in credentials.items() if key in PENDING_CREDENTIALS},
    }
    request.session[NOTICE_SESSION_KEY] = pending

    return render(
        request,
        "oidc/internal_notice.html",
        {
            "client": client,
            "scopes": describe_scopes(scopes),
            "notice_id": pending_id,
            "policy_url": settings.CONSENT_POLICY_URL,
        },
    )


@method_decorator(never_cache, name="dispatch")
class InternalNoticeView(AuthorizationMixin, View):
    """The "Continuer" button of the information page (CSRF-protected): record, then issue the code."""

    http_method_names = ["post"]

    def post(self, request: HttpRequest) -> HttpResponse:
        pending = request.session.get(NOTICE_SESSION_KEY, {})
        item = pending.pop(request.POST.get("pending", ""), None)
        request.session[NOTICE_SESSION_KEY] = pending
        if (
            item is None
            or not request.user.is_authenticated
            or item["user"] != str(request.user.pk)
            or time.time() - item["created"] > PENDING_LIFETIME_SECONDS
        ):
            return error_page(
                request,
                "invalid_request",
                _("Cette demande d'autorisation a expiré. Retournez sur le service et recommencez."),
            )
        credentials = item["credentials"]
        client = client_by_client_id(credentials.get("client_id", ""))
        if client is None or not client.is_internal:
            # Changed by an operator meanwhile: this page no longer stands for a consent.
            return error_page(
                request,
                "invalid_request",
                _("Cette demande d'autorisation a expiré. Retournez sur le service et recommencez."),
            )
        internal_notice_record(user=request.user, client=client, scopes=item["scopes"])
        return self._finish(request, item["scopes"], credentials)
