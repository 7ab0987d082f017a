"""Request ids, one access line per request, and structured JSON logs.

Every request gets an id: the one the TLS proxy sent in `X-Request-ID` when the deployment
trusts its proxies for it (`REQUEST_ID_FROM_PROXY`, on by default behind declared proxies)
and the value is well formed, a new random one otherwise. It is returned in the response's
`X-Request-ID` header and attached to every log record written while the request runs, so
an operator finds all the lines of one request, and a resident's support ticket can quote it.

The access line (logger `cum.access`) carries the method, the route *pattern* (never the
path: paths hold one-time tokens such as email confirmation links), the status, the
duration and the partner's client id when a protocol endpoint identified one. Nothing else
of the request is logged: no query string, no header, no body, no address.

`JsonFormatter` writes one JSON object per line. Exception messages are left out (a
database error can quote the values of a row); the exception's type and the stack's
frames are enough to find the code.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
import traceback
from collections.abc import Mapping
from contextvars import ContextVar, Token
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from django.conf import settings

from common import metrics

access_log = logging.getLogger("cum.access")

_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{8,128}")


@dataclass
class RequestContext:
    request_id: str
    method: str
    started: float = field(default_factory=time.perf_counter)
    route: str = "-"
    client_id: str = ""


_current: ContextVar[RequestContext | None] = ContextVar("cum_request", default=None)


def current() -> RequestContext | None:
    return _current.get()


def request_id_from(meta: Mapping[str, Any]) -> str:
    """The proxy's request id when trusted and well formed, else a fresh one."""
    if settings.REQUEST_ID_FROM_PROXY:
        offered = meta.get("HTTP_X_REQUEST_ID", "")
        if isinstance(offered, str) and _REQUEST_ID.fullmatch(offered):
            return offered
    return secrets.token_hex(16)


def begin(meta: Mapping[str, Any]) -> tuple[RequestContext, Token[RequestContext | None]]:
    context = RequestContext(request_id=request_id_from(meta), method=str(meta.get("REQUEST_METHOD", "")))
    return context, _current.set(context)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def end(context: RequestContext, token: Token[RequestContext | None], status: int) -> None:
    elapsed = time.perf_counter() - context.started
    try:
        method = context.method if context.method in _METHODS else "other"
        metrics.REQUESTS.labels(context.route, method, str(status)).inc()
        metrics.LATENCY.labels(context.route).observe(elapsed)
        access_log.info(
            "%s %s %s",
            context.method,
            context.route,
            status,
            extra={
                "http": {
                    "method": context.method,
                    "route": context.route,
                    "status": status,
                    "duration_ms": round(elapsed * 1000, 2),
                    **({"client_id": context.client_id} if context.client_id else {}),
                }
            },
        )
    finally:
        _current.reset(token)


def set_client_id(client_id: str) -> None:
    """Name the partner client a protocol request was made by (its public client_id)."""
    context = _current.get()
    if context is not None and client_id:
        context.client_id = client_id[:100]


class RequestIdFilter(logging.Filter):
    """Gives every record `request_id` ("-" outside a request), for text formats."""

    def filter(self, record: logging.LogRecord) -> bool:
        context = _current.get()
        record.request_id = context.request_id if context is not None else "-"
        return True


# Django's request and server loggers put the raw path in their message ("Not Found:
# /compte/email/confirmer/<token>/"): their records are reduced to their status.
_PATH_QUOTING_LOGGERS = frozenset({"django.request", "django.server", "django.security.csrf"})


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        if record.name in _PATH_QUOTING_LOGGERS:
            status = getattr(record, "status_code", None)
            entry["message"] = f"{record.levelname.lower()} response" + (f" {status}" if status else "")
        else:
            entry["message"] = record.getMessage()
        context = _current.get()
        if context is not None:
            entry["request_id"] = context.request_id
        http = getattr(record, "http", None)
        if isinstance(http, dict):
            entry["http"] = http
        if record.exc_info and record.exc_info[0] is not None:
            entry["exception"] = {
                "type": f"{record.exc_info[0].__module__}.{record.exc_info[0].__qualname__}",
                "stack": [
                    f"{frame.filename}:{frame.lineno} in {frame.name}"
                    for frame in traceback.extract_tb(record.exc_info[2])
                ],
            }
        return json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
