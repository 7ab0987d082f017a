"""Start-up checks of the identity app's configuration."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, Warning, register
from django.core.mail.backends.console import EmailBackend as Console
from django.core.mail.backends.dummy import EmailBackend as Dummy
from django.core.mail.backends.locmem import EmailBackend as Locmem
from django.utils.module_loading import import_string

from common import argon2_build


@register(Tags.security, deploy=True)
def check_production_secrets(app_configs: Any, **kwargs: Any) -> list[Any]:
    problems: list[Any] = []
    if not settings.PRODUCTION:
        return problems
    if not settings.ISSUER.startswith("https://"):
        problems.append(Error("OIDC_ISSUER must be https in production", id="identity.E001"))
    if settings.CLIENT_SECRET_HMAC_KEY.startswith("client-secret:"):
        problems.append(
            Warning(
                "CLIENT_SECRET_HMAC_KEY is derived from SECRET_KEY; set it on its own so that "
                "rotating SECRET_KEY does not invalidate every client secret.",
                id="identity.W001",
            )
        )
    if settings.DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        problems.append(Warning("SQLite in production: set DATABASE_URL to PostgreSQL", id="identity.W002"))
    if not settings.REDIS_URL:
        problems.append(Warning("REDIS_URL is not set: caches are per process", id="identity.W003"))
    return problems


@register(Tags.security)
def check_email_backend(app_configs: Any, **kwargs: Any) -> list[Any]:
    """Production emails carry secrets (reset, verification, "Ce n'était pas vous ?" links):
    a backend that prints, keeps in memory, writes to a file or drops them is refused, by
    what its class is (config/settings.py refuses Django's own by name already). Runs at
    every check, not only --deploy: in production there is no safe use for them."""

    if not settings.PRODUCTION:
        return []
    try:
        backend = import_string(settings.EMAIL_BACKEND)
    except ImportError:
        return [Error(f"EMAIL_BACKEND {settings.EMAIL_BACKEND} cannot be imported", id="identity.E011")]
    # The file backend subclasses the console one.
    if isinstance(backend, type) and issubclass(backend, (Console, Locmem, Dummy)):
        return [
            Error(
                f"EMAIL_BACKEND {settings.EMAIL_BACKEND} delivers no email (console, memory, file or "
                "dummy): residents would never get their links, and the console would log them.",
                hint="Set EMAIL_BACKEND to a real one, e.g. django.core.mail.backends.smtp.EmailBackend.",
                id="identity.E010",
            )
        ]
    return []


@register(Tags.security, deploy=True)
def check_proxy_setup(app_configs: Any, **kwargs: Any) -> list[Any]:
    if not settings.PRODUCTION:
        return []
    if settings.BEHIND_TLS_PROXY and settings.TRUSTED_PROXY_COUNT == 0:
        return [
            Warning(
                "BEHIND_TLS_PROXY is true but TRUSTED_PROXY_COUNT is 0: every resident appears with the "
                "proxy's address, so one client's sign-in failures trip the per-IP limit for everyone.",
                hint="Set TRUSTED_PROXY_COUNT to the number of proxies that append to X-Forwarded-For "
                "(docs/operators.md, 'Proxies and the client address').",
                id="identity.W010",
            )
        ]
    return []


ARGON2_CHECK_IDS = {
    "cpu": "identity.E020",  # the CPU lacks the instructions the build needs
    "machine": "identity.E021",  # built for another architecture
    "stale": "identity.W020",  # the record describes another binary
    "unreadable": "identity.W021",
    "unknown-cpu": "identity.W022",  # no /proc/cpuinfo flags to check against
}


@register(Tags.security)
def check_argon2_build(app_configs: Any, **kwargs: Any) -> list[Any]:
    """The Argon2id binary (argon2-cffi-bindings, built for a SIMD level by
    `python -m common.argon2_build`) runs on this CPU: a build for AVX2 on a CPU without it
    would kill the worker with SIGILL at the first password check. Runs at every check (the
    start-up commands of docs/operators.md run `check --deploy` on each node)."""

    return [
        (Error if problem.error else Warning)(
            problem.message, hint=problem.hint, id=ARGON2_CHECK_IDS[problem.code]
        )
        for problem in argon2_build.installed_problems()
    ]
