"""Throwaway PostgreSQL databases and the production environment for the operations suite.

A database is created empty under a fresh name (OPS_DB_PREFIX, default `cum_ops_`, then the
given label and a random suffix) on the server of OPS_POSTGRES_URL (default
postgres://postgres@127.0.0.1:5432/postgres, a role allowed to create databases) and dropped
on exit, also when the test fails. Nothing else on the server is touched.
"""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit, urlunsplit

import psycopg

ADMIN_URL = os.environ.get("OPS_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")
PREFIX = os.environ.get("OPS_DB_PREFIX", "cum_ops_")
ISSUER = "https://ops.example"
LOOPBACK = "127.0.0.1"


def database_url(name: str) -> str:
    parts = urlsplit(ADMIN_URL)
    return urlunsplit((parts.scheme, parts.netloc, "/" + name, "", ""))


class ThrowawayDatabase:
    def __init__(self, label: str) -> None:
        self.name = f"{PREFIX}{label}_{secrets.token_hex(3)}"

    def __enter__(self) -> ThrowawayDatabase:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.name}"')
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')


def production_env(*, database: str, var_dir: Path, redis_url: str = "") -> dict[str, str]:
    """DJANGO_ENV=production with fresh secrets, behind one TLS proxy, on loopback."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "OIDC_", "PYTEST"))}
    env.update(
        {
            "DJANGO_ENV": "production",
            "DJANGO_SETTINGS_MODULE": "config.settings",
            "SECRET_KEY": secrets.token_urlsafe(48),
            "KEY_ENCRYPTION_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "CLIENT_SECRET_HMAC_KEY": secrets.token_urlsafe(32),
            "CONSENT_MASTER_KEY": base64.urlsafe_b64encode(os.urandom(32)).decode(),
            "PAIRWISE_SUBJECT_KEY": secrets.token_urlsafe(32),
            "OIDC_ISSUER": ISSUER,
            "ALLOWED_HOSTS": LOOPBACK,
            "SECURE_SSL_REDIRECT": "false",
            "BEHIND_TLS_PROXY": "true",
            "TRUSTED_PROXY_COUNT": "1",
            # Production names a real mail backend; nothing here sends email (no server listens).
            "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "EMAIL_HOST": LOOPBACK,
            "DATABASE_URL": database_url(database),
            "REDIS_URL": redis_url,
            "DEMO_ENABLED": "false",
            "VAR_DIR": str(var_dir),
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
    )
    return env
