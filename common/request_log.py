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
from json.encoder import encode_basestring
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
        metrics.child(metrics.REQUESTS, context.route, method, str(status)).inc()
        metrics.child(metrics.LATENCY, context.route).observe(elapsed)
        if not access_log.isEnabledFor(logging.INFO):
            return
        duration_ms = round(elapsed * 1000, 2)
        handler = _sole_json_handler()
        if handler is not None:
            _write_access_line(handler, context, status, duration_ms)
        else:
            access_log.info(
                "%s %s %s",
                context.method,
                context.route,
                status,
                extra={"http": _http(context, status, duration_ms)},
            )
    finally:
        _current.reset(token)


def abandon(token: Token[RequestContext | None]) -> None:
    """Leave the request context begun with `token` without an access line or metrics: the
    request is handed on to a handler that begins its own (config/bearer_path.py)."""
    _current.reset(token)


def _sole_json_handler() -> logging.StreamHandler[Any] | None:
    """The handler an access record would reach when it is the only one and the production
    one (settings.LOGGING with LOG_FORMAT=json: a StreamHandler, JsonFormatter, RequestIdFilter,
    on the root logger, nothing configured on `cum.access` or between them); else None, and
    the record goes through logging as any other (a second handler, the text format, a filter,
    pytest's capture handlers…)."""
    if access_log.handlers or access_log.filters or access_log.disabled or not access_log.propagate:
        return None
    if access_log.parent is not logging.root:  # a "cum" logger was configured
        return None
    handlers = logging.root.handlers
    if len(handlers) != 1:
        return None
    handler = handlers[0]
    if (
        type(handler) is not logging.StreamHandler
        or type(handler.formatter) is not JsonFormatter
        or handler.level > logging.INFO
        or len(handler.filters) != 1
        or type(handler.filters[0]) is not RequestIdFilter
    ):
        return None
    return handler


def _http(context: RequestContext, status: int, duration_ms: float) -> dict[str, Any]:
    """The access record's `http` object."""
    return {
        "method": context.method,
        "route": context.route,
        "status": status,
        "duration_ms": duration_ms,
        **({"client_id": context.client_id} if context.client_id else {}),
    }


# JSONEncoder's own string encoder with ensure_ascii=False (json.encoder.encode_basestring,
# the C one when available), and the access logger's name as it encodes it.
_string = encode_basestring
_ACCESS_HEAD = '","level":"INFO","logger":' + _string(access_log.name) + ',"message":'


def _access_line(created: float, context: RequestContext, status: int, duration_ms: float) -> str:
    """The access line `_json_line` writes for this request (`JsonFormatter` on the record
    `end` would log), assembled from its pieces with JSONEncoder's own encoders, without the
    encoder's walk of two dicts: the same keys in the same order, the same separators, the
    same string escapes, int and float forms. Its fields of an unexpected type (never set so
    by this module) go through `_json_line` itself."""
    method, route, client_id = context.method, context.route, context.client_id
    if (
        type(method) is not str
        or type(route) is not str
        or type(client_id) is not str
        or type(status) is not int
        or type(duration_ms) is not float
        or duration_ms != duration_ms  # NaN
        or duration_ms in (_INFINITY, -_INFINITY)
    ):
        return _json_line(
            created,
            "INFO",
            access_log.name,
            f"{method} {route} {status}",
            _http(context, status, duration_ms),
        )
    current = _current.get()
    parts = [
        '{"time":"',
        datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds"),
        _ACCESS_HEAD,
        _string(f"{method} {route} {status}"),
    ]
    if current is not None:
        parts += (',"request_id":', _string(current.request_id))
    parts += (
        ',"http":{"method":',
        _string(method),
        ',"route":',
        _string(route),
        ',"status":',
        int.__repr__(status),
        ',"duration_ms":',
        float.__repr__(duration_ms),
    )
    if client_id:
        parts += (',"client_id":', _string(client_id))
    parts.append("}}")
    return "".join(parts)


_INFINITY = float("inf")


def _write_access_line(
    handler: logging.StreamHandler[Any], context: RequestContext, status: int, duration_ms: float
) -> None:
    """What `access_log.info(...)` does through `handler` (Handler.handle, StreamHandler.emit,
    JsonFormatter.format), without building a LogRecord: the same line (`_access_line`), under
    the handler's lock, flushed, a write error reported by the handler's handleError.
    RequestIdFilter only sets an attribute on the record for text formats: nothing to do here."""
    created = time.time()  # LogRecord.created
    handler.acquire()
    try:
        try:
            line = _access_line(created, context, status, duration_ms)
            handler.stream.write(line + handler.terminator)
            handler.flush()
        except RecursionError:
            raise
        except Exception:
            record = access_log.makeRecord(
                access_log.name,
                logging.INFO,
                "(unknown file)",
                0,
                "%s %s %s",
                (context.method, context.route, status),
                None,
                extra={"http": _http(context, status, duration_ms)},
            )
            handler.handleError(record)
    finally:
        handler.release()


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


# json.dumps(entry, ensure_ascii=False, separators=(",", ":")), without a new encoder per line.
_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"))


def _json_line(
    created: float,
    levelname: str,
    name: str,
    message: str,
    http: Any = None,
    exc_info: Any = None,
) -> str:
    """One JSON log line (JsonFormatter's, and the access line's written directly)."""
    entry: dict[str, Any] = {
        "time": datetime.fromtimestamp(created, tz=UTC).isoformat(timespec="milliseconds"),
        "level": levelname,
        "logger": name,
        "message": message,
    }
    context = _current.get()
    if context is not None:
        entry["request_id"] = context.request_id
    if isinstance(http, dict):
        entry["http"] = http
    if exc_info and exc_info[0] is not None:
        entry["exception"] = {
            "type": f"{exc_info[0].__module__}.{exc_info[0].__qualname__}",
            "stack": [
                f"{frame.filename}:{frame.lineno} in {frame.name}"
                for frame in traceback.extract_tb(exc_info[2])
            ],
        }
    return _ENCODER.encode(entry)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        if record.name in _PATH_QUOTING_LOGGERS:
            status = getattr(record, "status_code", None)
            message = f"{record.levelname.lower()} response" + (f" {status}" if status else "")
        else:
            message = record.getMessage()
        http = getattr(record, "http", None)
        return _json_line(record.created, record.levelname, record.name, message, http, record.exc_info)
