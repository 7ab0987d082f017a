"""The protocol endpoints through a shorter Django request cycle.

Partner back-ends call /token, /userinfo, /introspect, /revoke and /par many times a second,
and probes call /healthz, /readyz and /metrics. On these exact paths
(config.middleware.PROTOCOL_PATHS) six of the middleware in settings.MIDDLEWARE do nothing:
the five browser-only ones pass the request straight on (config/middleware.py), and
identity.middleware.BrowserSessionMiddleware has no session to check (SessionMiddleware did
not attach one). Running them still costs their calls, and Django resolves the path against
every URL pattern of the site to find a view known in advance.

`ProtocolPathDispatch` (WSGI, config/wsgi.py) sends a request whose PATH_INFO is exactly one
of these paths to a second instance of Django's own `WSGIHandler` that differs in two points:

- its middleware chain is settings.MIDDLEWARE, in the same order, *without* those six (each
  kept middleware is a new instance of the same class, wrapped by Django's own
  `convert_exception_to_response`, its process_view/process_exception/process_template_response
  hooks registered as Django registers them);
- its `resolve_request` answers from the match Django's resolver gave for that path (resolved
  once per URLconf, a copy per request), instead of walking the patterns.

Everything else is Django's own code, unchanged: `WSGIHandler.__call__` (script prefix,
`request_started` and, on close, `request_finished` — so close_old_connections and the
connection health checks run as before — with the same sender), WSGIRequest,
`get_response` (urlconf, 4xx/5xx logging), `_get_response` (view middleware, ATOMIC_REQUESTS,
process_exception, template responses), the conversion of exceptions into responses
(handler400/handler500, got_request_exception). So RequestLogMiddleware, SecurityMiddleware,
the security headers, RequestSizeMiddleware's 413/400, CommonMiddleware's Host validation,
CSRF's view check, X-Frame-Options and WhiteNoise (in production) all still run, and the views
are the same callables (CORS wrappers included). Any other path goes to the full stack.

If the short chain cannot be built (a middleware that cannot run synchronously), every
request goes to the full stack.
tests/test_lean_protocol_path.py sends the same requests through both and compares them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from typing import Any

from django.conf import settings
from django.contrib.sessions.middleware import SessionMiddleware as DjangoSessionMiddleware
from django.core.exceptions import ImproperlyConfigured, MiddlewareNotUsed
from django.core.handlers.exception import convert_exception_to_response
from django.core.handlers.wsgi import WSGIHandler
from django.http import HttpRequest
from django.urls import ResolverMatch, get_resolver
from django.utils.module_loading import import_string

from config.middleware import PROTOCOL_PATHS, _SkippedOnProtocolPaths
from identity.middleware import BrowserSessionMiddleware

logger = logging.getLogger(__name__)

StartResponse = Callable[..., Any]
WSGIApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


def protocol_middleware_paths(middleware: list[str]) -> list[str]:
    """settings.MIDDLEWARE, in its order, without the middleware that do nothing on the
    protocol paths: those that pass such a request straight on (their own first line:
    `if request.path_info in PROTOCOL_PATHS: return self.get_response(request)`), and
    BrowserSessionMiddleware, which checks a signed-in browser's session and sees none there
    unless some session middleware that runs on these paths was kept."""
    classes = {path: import_string(path) for path in middleware}
    kept = [path for path in middleware if not issubclass(classes[path], _SkippedOnProtocolPaths)]
    if not any(issubclass(classes[path], DjangoSessionMiddleware) for path in kept):
        kept = [path for path in kept if classes[path] is not BrowserSessionMiddleware]
    return kept


def short_cycle_handler(middleware: list[str], handler_class: type[WSGIHandler] = WSGIHandler) -> WSGIHandler:
    """An instance of `handler_class` (Django's WSGIHandler) whose chain is `middleware` (all
    synchronous) and whose URL resolution is answered from a per-path cache of Django's own
    matches."""
    # The full stack's class itself, not a subclass of ours: request_started and
    # request_finished are sent with the same sender (WSGIHandler in production).
    handler: Any = handler_class.__new__(handler_class)  # (the stubs omit the private attributes)
    handler._view_middleware = []
    handler._template_response_middleware = []
    handler._exception_middleware = []
    chain = convert_exception_to_response(handler._get_response)
    for path in reversed(middleware):
        middleware_class = import_string(path)
        if not getattr(middleware_class, "sync_capable", True):
            raise ImproperlyConfigured(f"{path} cannot run synchronously")
        try:
            instance = middleware_class(chain)
        except MiddlewareNotUsed:
            continue
        if instance is None:
            raise ImproperlyConfigured(f"Middleware factory {path} returned None.")
        if hasattr(instance, "process_view"):
            handler._view_middleware.insert(0, instance.process_view)
        if hasattr(instance, "process_template_response"):
            handler._template_response_middleware.append(instance.process_template_response)
        if hasattr(instance, "process_exception"):
            handler._exception_middleware.append(instance.process_exception)
        chain = convert_exception_to_response(instance)
    handler._middleware_chain = chain
    handler.resolve_request = _CachedResolution(handler)
    return handler


class _CachedResolution:
    """BaseHandler.resolve_request for the protocol paths, without walking the patterns:
    Django's resolver is asked once per path and URLconf, each request gets a copy of its match."""

    def __init__(self, handler: WSGIHandler) -> None:
        self.handler = handler
        self.matches: dict[tuple[Any, str], ResolverMatch] = {}

    def __call__(self, request: HttpRequest) -> ResolverMatch:
        if hasattr(request, "urlconf"):  # set by a middleware: Django's own way
            return type(self.handler).resolve_request(self.handler, request)
        resolver = get_resolver()
        key = (resolver, request.path_info)
        match = self.matches.get(key)
        if match is None:
            match = resolver.resolve(request.path_info)  # Resolver404 as Django raises it
            if len(self.matches) > 4 * len(PROTOCOL_PATHS):
                self.matches.clear()  # URLconfs swapped (tests): keep only the current ones
            self.matches[key] = match
        # Each request its own ResolverMatch (Django forbids copy.copy: it would pickle it).
        own = ResolverMatch.__new__(ResolverMatch)
        own.__dict__.update(match.__dict__)
        request.resolver_match = own
        return own


class ProtocolPathDispatch:
    """WSGI: the exact protocol paths to the short request cycle, all else to `application`."""

    def __init__(self, application: WSGIApp) -> None:
        self.application = application
        self.protocol_application: WSGIApp = application
        try:
            self.protocol_application = short_cycle_handler(
                protocol_middleware_paths(list(settings.MIDDLEWARE)),
                type(application) if isinstance(application, WSGIHandler) else WSGIHandler,
            )
        except ImproperlyConfigured:
            logger.warning("protocol paths: the short request cycle is off", exc_info=True)

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") in PROTOCOL_PATHS:
            return self.protocol_application(environ, start_response)
        return self.application(environ, start_response)
