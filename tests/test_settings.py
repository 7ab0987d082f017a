"""Configuration comes from the environment, and production refuses unsafe defaults."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_settings(
    env: dict[str, str], code: str = "from django.conf import settings; settings.DEBUG"
) -> subprocess.CompletedProcess:
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DATABASE_URL", "REDIS_URL", "DJANGO_ENV", "SECRET_KEY"}
    }
    base.update({"DJANGO_SETTINGS_MODULE": "config.settings"})
    base.update(env)
    script = f"import django; django.setup(); {code}"
    return subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=base, capture_output=True, text=True, timeout=60
    )


PRODUCTION = {
    "DJANGO_ENV": "production",
    "SECRET_KEY": "x" * 64,
    "KEY_ENCRYPTION_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "OIDC_ISSUER": "https://compte.example.org",
    "ALLOWED_HOSTS": "compte.example.org",
    "CONSENT_MASTER_KEY": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
    "PAIRWISE_SUBJECT_KEY": "p" * 43,
    # Stated explicitly in production: where email goes, and which proxies stand in front.
    "EMAIL_BACKEND": "django.core.mail.backends.smtp.EmailBackend",
    "EMAIL_HOST": "smtp.example.org",
    "TRUSTED_PROXY_COUNT": "1",
    "BEHIND_TLS_PROXY": "true",
}


def test_production_requires_secret_key():
    env = dict(PRODUCTION)
    env.pop("SECRET_KEY")
    result = run_settings(env)
    assert result.returncode != 0
    assert "SECRET_KEY" in result.stderr


@pytest.mark.parametrize("name", ["KEY_ENCRYPTION_KEY", "CONSENT_MASTER_KEY", "PAIRWISE_SUBJECT_KEY"])
def test_production_requires_each_key(name):
    env = dict(PRODUCTION)
    env.pop(name)
    result = run_settings(env)
    assert result.returncode != 0
    assert name in result.stderr


def test_production_requires_https_issuer_and_allowed_hosts():
    assert "https" in run_settings({**PRODUCTION, "OIDC_ISSUER": "http://compte.example.org"}).stderr
    env = dict(PRODUCTION)
    env.pop("ALLOWED_HOSTS")
    assert "ALLOWED_HOSTS" in run_settings(env).stderr


def test_production_settings_are_hardened():
    code = (
        "from django.conf import settings as s; "
        "print(s.DEBUG, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_HSTS_SECONDS > 0, "
        "s.SESSION_COOKIE_NAME, s.OAUTH2_PROVIDER['ALLOWED_REDIRECT_URI_SCHEMES'])"
    )
    result = run_settings(PRODUCTION, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False True True True __Host-session ['https']"


def test_database_and_redis_urls_are_read_from_the_environment():
    code = (
        "from django.conf import settings as s; "
        "print(s.DATABASES['default']['ENGINE'], s.DATABASES['default']['CONN_MAX_AGE'], "
        "s.CACHES['default']['BACKEND'])"
    )
    result = run_settings(
        {"DATABASE_URL": "postgres://u@db.internal:5432/cum", "REDIS_URL": "redis://cache.internal:6379/0"},
        code,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [
        "config.postgresql",
        "600",
        "django.core.cache.backends.redis.RedisCache",
    ]


def test_the_database_health_check_is_the_socket_one_unless_query_is_asked():
    code = (
        "from django.conf import settings as s; d = s.DATABASES['default']; "
        "print(d['ENGINE'], s.DATABASE_HEALTH_CHECK, d['CONN_HEALTH_CHECKS'])"
    )
    url = {"DATABASE_URL": "postgres://u@db.internal:5432/cum"}
    result = run_settings(url, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["config.postgresql", "socket", "True"]
    result = run_settings({**url, "DATABASE_HEALTH_CHECK": " Query "}, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["config.postgresql", "query", "True"]


def test_an_unknown_database_health_check_is_a_configuration_error():
    for value in ("select", "none", ""):
        result = run_settings(
            {"DATABASE_URL": "postgres://u@db.internal:5432/cum", "DATABASE_HEALTH_CHECK": value}
        )
        assert result.returncode != 0
        assert "DATABASE_HEALTH_CHECK must be socket or query" in result.stderr


def test_sqlite_keeps_django_s_backend(tmp_path):
    code = "from django.conf import settings as s; print(s.DATABASES['default']['ENGINE'])"
    result = run_settings({"VAR_DIR": str(tmp_path)}, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "django.db.backends.sqlite3"


def test_the_url_s_libpq_options_survive_prepared_statements():
    code = "from django.conf import settings as s; print(sorted(s.DATABASES['default']['OPTIONS'].items()))"
    result = run_settings(
        {
            "DATABASE_URL": "postgres://u@db.internal:5432/cum?keepalives_idle=30&tcp_user_timeout=10000",
            "DATABASE_PREPARED_STATEMENTS": "true",
        },
        code,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == (
        "[('keepalives_idle', 30), ('prepare_threshold', 5), "
        "('server_side_binding', True), ('tcp_user_timeout', 10000)]"
    )


def test_default_is_an_embedded_sqlite_database_under_var(tmp_path):
    code = "from django.conf import settings as s; print(s.DATABASES['default']['NAME'])"
    result = run_settings({"VAR_DIR": str(tmp_path)}, code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(tmp_path / "db.sqlite3")


def test_bad_boolean_is_a_clear_configuration_error():
    result = run_settings({"DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DEBUG must be a boolean" in result.stderr


def test_prepared_statements_are_off_by_default_and_opt_in_on_postgresql():
    show = "from django.conf import settings; print(settings.DATABASES['default'].get('OPTIONS', {}))"
    postgres = {"DATABASE_URL": "postgres://u:p@127.0.0.1:5432/cum"}
    default = run_settings(postgres, show)
    assert default.returncode == 0, default.stderr
    assert "server_side_binding" not in default.stdout
    opted_in = run_settings(
        {**postgres, "DATABASE_PREPARED_STATEMENTS": "true", "DATABASE_PREPARE_THRESHOLD": "2"}, show
    )
    assert opted_in.returncode == 0, opted_in.stderr
    assert "'server_side_binding': True" in opted_in.stdout
    assert "'prepare_threshold': 2" in opted_in.stdout
    # SQLite keeps its own options whatever the flag says.
    sqlite = run_settings({"DATABASE_PREPARED_STATEMENTS": "true"}, show)
    assert "init_command" in sqlite.stdout


def test_production_logs_one_json_object_per_line_with_the_request_id():
    code = (
        "import logging; from common import request_log; "
        "context, token = request_log.begin({'REQUEST_METHOD': 'GET'}); "
        "logging.getLogger('identity.x').warning('hello'); request_log.end(context, token, 200)"
    )
    result = run_settings(PRODUCTION, code)
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in result.stderr.splitlines()]
    assert [line["message"] for line in lines] == ["hello", "GET - 200"]
    assert lines[0]["request_id"] == lines[1]["request_id"]
    assert lines[1]["http"]["status"] == 200


def test_log_format_and_heartbeat_settings_are_checked():
    assert "LOG_FORMAT" in run_settings({"LOG_FORMAT": "xml"}).stderr
    assert "OUTBOX_HEARTBEAT_LATE_SECONDS" in run_settings({"OUTBOX_HEARTBEAT_LATE_SECONDS": "5"}).stderr


def test_a_redis_that_never_answers_times_out_instead_of_hanging():
    """A host that accepts the connection and never answers (the shape of a Redis host gone
    bad): the cache raises redis' TimeoutError after REDIS_TIMEOUT_SECONDS, which
    config/errors.py turns into a 503; without the timeout the call would wait forever."""
    import socket  # noqa: PLC0415

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        code = (
            "from django.core.cache import caches\n"
            "try:\n"
            "    caches['ratelimit'].get('probe')\n"
            "except Exception as exc:\n"
            "    print(type(exc).__module__, type(exc).__name__)\n"
        )
        result = run_settings(
            {"REDIS_URL": f"redis://127.0.0.1:{port}/0", "REDIS_TIMEOUT_SECONDS": "1"}, code
        )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["redis.exceptions", "TimeoutError"]


def test_redis_timeout_is_checked():
    result = run_settings({"REDIS_TIMEOUT_SECONDS": "0"})
    assert result.returncode != 0
    assert "REDIS_TIMEOUT_SECONDS must be at least 1" in result.stderr
