"""Outbox handlers registry and the relay loop (see connectors.models.OutboxMessage)."""

from __future__ import annotations

import logging
import random
import urllib.error
import urllib.request
from collections.abc import Callable, Collection
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from common.outbound import open_without_redirects
from connectors.models import OutboxMessage

log = logging.getLogger(__name__)

LEASE_SECONDS = 120
HTTP_TIMEOUT_SECONDS = 10


class RetryableDeliveryError(Exception):
    """The partner could not take the message now (down, timeout, 5xx, 429): try later."""


class PermanentDeliveryError(Exception):
    """The partner refused the message for good (e.g. 4xx): dead-letter it at once."""


Handler = Callable[[OutboxMessage], None]
_handlers: dict[str, Handler] = {}
_secret_kinds: set[str] = set()


def register_handler(kind: str, handler: Handler, *, secret_payload: bool = False) -> None:
    """Called from AppConfig.ready() of the app that owns a message kind.

    `secret_payload`: the payload holds secrets or personal data (e.g. an email with a
    reset link): it is blanked as soon as the message is delivered or dead-lettered, so
    nothing lingers in the table (a dead-lettered one can then not be replayed).
    """
    _handlers[kind] = handler
    if secret_payload:
        _secret_kinds.add(kind)
    else:
        _secret_kinds.discard(kind)


def handler_for(kind: str) -> Handler | None:
    return _handlers.get(kind)


def backoff_delay(attempts: int, *, rng: random.Random | None = None) -> timedelta:
    """Exponential backoff with jitter, capped (attempts counts failures so far, ≥ 1): between
    half and all of OUTBOX_RETRY_BASE_SECONDS × 2^(attempts-1), at most OUTBOX_RETRY_MAX_SECONDS."""
    base, cap = settings.OUTBOX_RETRY_BASE_SECONDS, settings.OUTBOX_RETRY_MAX_SECONDS
    ceiling = min(cap, base * (2 ** min(max(0, attempts - 1), 40)))
    return timedelta(seconds=(rng or random).uniform(ceiling / 2, ceiling))


def http_post_form(url: str, fields: dict[str, str], *, headers: dict[str, str] | None = None) -> int:
    """POST application/x-www-form-urlencoded; classify failures for the relay."""

    request = urllib.request.Request(  # noqa: S310 - partner URLs are validated at registration
        url,
        data=urlencode(fields).encode(),
        headers={"Content-Type": "application/x-www-form-urlencoded", **(headers or {})},
        method="POST",
    )
    try:
        with open_without_redirects(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            return response.status
    except urllib.error.HTTPError as exc:
        if exc.code in (408, 425, 429) or exc.code >= 500:
            raise RetryableDeliveryError(f"HTTP {exc.code}") from exc
        raise PermanentDeliveryError(f"HTTP {exc.code}") from exc
    except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise RetryableDeliveryError(f"unreachable: {type(reason).__name__}") from exc


@dataclass
class RelayResult:
    delivered: int = 0
    retried: int = 0
    dead: int = 0

    @property
    def processed(self) -> int:
        return self.delivered + self.retried + self.dead


def _claim(batch_size: int, now: datetime, kinds: Collection[str] | None = None) -> list[OutboxMessage]:
    """Lease due messages so that concurrent workers never deliver the same one at once."""
    with transaction.atomic():
        due = OutboxMessage.objects.filter(
            status=OutboxMessage.Status.PENDING, next_attempt_at__lte=now
        ).filter(models_q_unlocked(now))
        if kinds is not None:
            due = due.filter(kind__in=list(kinds))
        if connection.features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        messages = list(due.order_by("next_attempt_at")[:batch_size])
        if messages:
            OutboxMessage.objects.filter(pk__in=[m.pk for m in messages]).update(
                locked_until=now + timedelta(seconds=LEASE_SECONDS)
            )
    return messages


def models_q_unlocked(now: datetime) -> Any:
    return Q(locked_until__isnull=True) | Q(locked_until__lt=now)


def _deliver(message: OutboxMessage, result: RelayResult) -> None:
    handler = handler_for(message.kind)
    now = timezone.now()
    attempts = message.attempts + 1
    try:
        if handler is None:
            raise PermanentDeliveryError(f"no handler for kind {message.kind!r}")
        handler(message)
    except RetryableDeliveryError as exc:
        if attempts >= message.max_attempts:
            _finish(message, attempts, OutboxMessage.Status.DEAD, str(exc))
            result.dead += 1
        else:
            OutboxMessage.objects.filter(pk=message.pk).update(
                attempts=attempts,
                next_attempt_at=now + backoff_delay(attempts),
                locked_until=None,
                last_error=str(exc)[:300],
            )
            result.retried += 1
        log.info("outbox %s %s attempt %d failed: %s", message.kind, message.pk, attempts, exc)
    except PermanentDeliveryError as exc:
        _finish(message, attempts, OutboxMessage.Status.DEAD, str(exc))
        result.dead += 1
        log.warning("outbox %s %s dead-lettered: %s", message.kind, message.pk, exc)
    except Exception as exc:  # a bug in a handler must not stop the relay
        log.exception("outbox %s %s handler crashed", message.kind, message.pk)
        OutboxMessage.objects.filter(pk=message.pk).update(
            attempts=attempts,
            next_attempt_at=now + backoff_delay(attempts),
            locked_until=None,
            last_error=f"handler error: {type(exc).__name__}"[:300],
        )
        result.retried += 1
    else:
        _finish(message, attempts, OutboxMessage.Status.DELIVERED, "")
        result.delivered += 1


def _finish(message: OutboxMessage, attempts: int, status: str, error: str) -> None:
    blank: dict[str, Any] = {"payload": {}} if message.kind in _secret_kinds else {}
    OutboxMessage.objects.filter(pk=message.pk).update(
        attempts=attempts,
        status=status,
        locked_until=None,
        last_error=error[:300],
        delivered_at=timezone.now() if status == OutboxMessage.Status.DELIVERED else None,
        **blank,
    )


def relay_once(*, batch_size: int = 50, kinds: Collection[str] | None = None) -> RelayResult:
    """Deliver every message due now (one batch), of the given kinds only if `kinds` is set.
    Returns what happened."""
    result = RelayResult()
    for message in _claim(batch_size, timezone.now(), kinds):
        _deliver(message, result)
    return result
