"""Settings for Compte unique métropolitain.

Every setting that varies between deployments is read from the environment here and
nowhere else. `DJANGO_ENV=production` switches to the production posture, where the
secrets must be provided and `manage.py check --deploy` is expected to be clean.
See docs/operators.md for the full list.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured
from django.utils.translation import gettext_lazy as _

from config.env import (
    env_bool,
    env_int,
    env_list,
    env_required_bool,
    env_required_int,
    env_required_str,
    env_str,
    local_secret,
)

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("VAR_DIR", str(BASE_DIR / "var")) or BASE_DIR / "var")

DJANGO_ENV = (env_str("DJANGO_ENV", "development") or "development").lower()
if DJANGO_ENV not in {"development", "production"}:
    raise ImproperlyConfigured("DJANGO_ENV must be 'development' or 'production'")
PRODUCTION = DJANGO_ENV == "production"
TESTING = "pytest" in sys.modules or (len(sys.argv) > 1 and sys.argv[1] == "test")

DEBUG = env_bool("DEBUG", default=not PRODUCTION and not TESTING)

if PRODUCTION:
    SECRET_KEY = env_str("SECRET_KEY") or ""
    if len(SECRET_KEY) < 50:
        raise ImproperlyConfigured("SECRET_KEY (at least 50 characters) is required in production")
else:
    SECRET_KEY = env_str("SECRET_KEY") or local_secret(VAR_DIR, "secret_key")

# Keys derived for distinct purposes; each may be set on its own so that rotating
# SECRET_KEY (sessions, CSRF) does not invalidate every client secret or signing key.
CLIENT_SECRET_HMAC_KEY = env_str("CLIENT_SECRET_HMAC_KEY") or ("client-secret:" + SECRET_KEY)
KEY_ENCRYPTION_KEY = env_str("KEY_ENCRYPTION_KEY") or ""
if PRODUCTION and not KEY_ENCRYPTION_KEY:
    raise ImproperlyConfigured(
        "KEY_ENCRYPTION_KEY (urlsafe base64 of 32 random bytes) is required in production"
    )

ISSUER = (env_str("OIDC_ISSUER", "http://127.0.0.1:8000") or "").rstrip("/")
_issuer = urlsplit(ISSUER)
if _issuer.scheme not in {"http", "https"} or not _issuer.netloc or _issuer.query or _issuer.fragment:
    raise ImproperlyConfigured("OIDC_ISSUER must be an absolute http(s) URL without query or fragment")
if PRODUCTION and _issuer.scheme != "https":
    raise ImproperlyConfigured("OIDC_ISSUER must use https in production")

ALLOWED_HOSTS = env_list(
    "ALLOWED_HOSTS",
    [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]", "testserver", _issuer.hostname or ""],
)
if PRODUCTION and not ALLOWED_HOSTS:
    raise ImproperlyConfigured("ALLOWED_HOSTS is required in production")

INSTALLED_APPS = [
    "identity.admin_apps.StaffAdminConfig",  # django.contrib.admin with our sign-in (MFA, audit)
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "oauth2_provider",
    "rest_framework",
    # The OpenAPI description of the REST APIs (/api/schema/) and its Swagger UI (/api/docs/),
    # whose files come from the sidecar app: served by us (whitenoise), no CDN (config/api_docs.py).
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_otp",
    "identity.apps.IdentityConfig",
    "identity.franceconnect.apps.FranceConnectConfig",
    "identity.mfa.apps.MfaConfig",
    "consent.apps.ConsentConfig",
    "profiles.apps.ProfilesConfig",
    "connectors.apps.ConnectorsConfig",
]

MIDDLEWARE = [
    # The request id and the access line (common/request_log.py): first, so it times it all.
    "config.middleware.RequestLogMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "identity.middleware.SecurityHeadersMiddleware",
    # Oversized or malformed bodies answered 413/400 before anything reads them.
    "config.request_limits.RequestSizeMiddleware",
    # Five browser-only middleware are skipped on the protocol endpoints (config/middleware.py).
    "config.middleware.SessionMiddleware",
    "config.middleware.LocaleMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "config.middleware.AuthenticationMiddleware",
    "identity.middleware.BrowserSessionMiddleware",
    "config.middleware.OTPMiddleware",
    "config.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if PRODUCTION:
    # Static files served by the WSGI process itself (compressed, cache-busted names).
    MIDDLEWARE.insert(1, "whitenoise.middleware.WhiteNoiseMiddleware")

ROOT_URLCONF = "config.urls"
WSGI_APPLICATION = "config.wsgi.application"
ASGI_APPLICATION = "config.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.template.context_processors.i18n",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "identity.context_processors.site",
            ],
        },
    }
]

# --- Database -------------------------------------------------------------------------
DATABASE_URL = env_str("DATABASE_URL") or f"sqlite:///{VAR_DIR / 'db.sqlite3'}"
if DATABASE_URL.startswith("sqlite:///"):
    VAR_DIR.mkdir(parents=True, exist_ok=True)
DATABASES = {
    "default": dj_database_url.parse(
        DATABASE_URL,
        conn_max_age=env_int("DATABASE_CONN_MAX_AGE", 600),
        # A check of a reused connection before its first query of each request: no 500
        # after a database restart or failover. Keep it on. Which check: DATABASE_HEALTH_CHECK.
        conn_health_checks=env_bool("DATABASE_CONN_HEALTH_CHECKS", True),
    )
}
# PostgreSQL: the project's backend (config/postgresql/base.py), Django's with a health check
# that polls an idle connection's socket instead of a `SELECT 1` round trip ("socket", the
# default); "query" keeps Django's `SELECT 1` before every request's first query.
DATABASE_HEALTH_CHECK = env_str("DATABASE_HEALTH_CHECK", "socket").strip().lower()
if DATABASE_HEALTH_CHECK not in {"socket", "query"}:
    raise ImproperlyConfigured(
        f"DATABASE_HEALTH_CHECK must be socket or query, got {DATABASE_HEALTH_CHECK!r}"
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"]["ENGINE"] = "config.postgresql"
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # Tests use a file, not memory, so that real worker processes can share the database.
    # One file per test run, so that concurrent runs never share it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")}
    # WAL lets readers work while one writer commits; IMMEDIATE avoids lock upgrades
    # failing half-way through a transaction.
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; PRAGMA busy_timeout=5000;",
        "transaction_mode": "IMMEDIATE",
    }
elif env_bool("DATABASE_PREPARED_STATEMENTS", False):
    # PostgreSQL (psycopg 3): server-side parameter binding, and a statement run
    # DATABASE_PREPARE_THRESHOLD times on a connection is prepared once and then only
    # executed (psycopg's prepare_threshold). Off by default: it needs a direct connection
    # or PgBouncer >= 1.21 with max_prepared_statements > 0 (docs/operators.md). Measured:
    # 10-20 % less worker CPU on userinfo (bench/README.md, lean protocol path).
    # (Added to the options of DATABASE_URL's query string, libpq's keepalives among them.)
    DATABASES["default"]["OPTIONS"] = {
        **DATABASES["default"].get("OPTIONS", {}),
        "server_side_binding": True,
        "prepare_threshold": env_int("DATABASE_PREPARE_THRESHOLD", 5),
    }
# The consent gate's and the ledger proofs' statements (consent/prepared.py) are prepared on
# PostgreSQL under the same switch: they too need a direct connection or PgBouncer >= 1.21.
CONSENT_PREPARED_STATEMENTS = env_bool("DATABASE_PREPARED_STATEMENTS", False)
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache and rate limits ------------------------------------------------------------
REDIS_URL = env_str("REDIS_URL") or ""
# Seconds to connect to Redis and to wait for each of its answers: when the Redis host is
# down or unreachable, a request fails in this time with the 503 of config/errors.py instead
# of holding its worker thread until TCP gives up (minutes).
REDIS_TIMEOUT_SECONDS = env_int("REDIS_TIMEOUT_SECONDS", 5)
if REDIS_TIMEOUT_SECONDS < 1:
    raise ImproperlyConfigured("REDIS_TIMEOUT_SECONDS must be at least 1")
_REDIS_OPTIONS = {"socket_connect_timeout": REDIS_TIMEOUT_SECONDS, "socket_timeout": REDIS_TIMEOUT_SECONDS}
# Parallel test workers share one Redis: each keeps to its own keys.
_TEST_CACHE_SUFFIX = f"-test-{os.environ.get('PYTEST_XDIST_WORKER', 'main')}" if TESTING else ""
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "cum" + _TEST_CACHE_SUFFIX,
            "OPTIONS": _REDIS_OPTIONS,
        },
        "ratelimit": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "cum-rl" + _TEST_CACHE_SUFFIX,
            "OPTIONS": _REDIS_OPTIONS,
        },
    }
else:
    # Without Redis, rate-limit counters live in the database so that every process of
    # one deployment shares them; the general cache may stay process-local.
    CACHES = {
        "default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache", "LOCATION": "cum"},
        "ratelimit": {"BACKEND": "django.core.cache.backends.db.DatabaseCache", "LOCATION": "cum_ratelimit"},
    }

# --- Authentication -------------------------------------------------------------------
AUTH_USER_MODEL = "identity.User"
AUTHENTICATION_BACKENDS = ["identity.email_backend.EmailBackend"]
LOGIN_URL = "identity:login"
LOGIN_REDIRECT_URL = "identity:account"
LOGOUT_REDIRECT_URL = "identity:login"

PASSWORD_HASHERS = [
    "identity.hashers.Argon2idHasher",
    "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    "django.contrib.auth.hashers.PBKDF2SHA1PasswordHasher",
    "django.contrib.auth.hashers.BCryptSHA256PasswordHasher",
    "identity.hashers.LegacyBcryptHasher",
    "identity.hashers.LegacySaltedSHA256Hasher",
    "identity.hashers.LegacySaltedSHA1Hasher",
]
if TESTING and not env_bool("TEST_REAL_HASHER_COST", default=False):
    # Argon2id stays the algorithm under test; only its memory cost is lowered so the
    # suite does not spend minutes hashing. tests/test_passwords.py checks the real cost.
    PASSWORD_HASHERS[0] = "identity.hashers.FastTestArgon2idHasher"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "identity.password_rules.LengthValidator", "OPTIONS": {"min_length": 8, "max_length": 128}},
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator",
        "OPTIONS": {"user_attributes": ("email", "given_name", "family_name")},
    },
    {"NAME": "identity.password_rules.CommonPasswordValidator"},
]
PASSWORD_RESET_TIMEOUT = 60 * 60  # one hour
EMAIL_VERIFICATION_TIMEOUT = 60 * 60 * 24 * 3  # three days

# Django's database stores (cached in Redis when there is one), opening a signed-in session
# with one INSERT instead of a read, an INSERT and an UPDATE (identity/session_stores).
SESSION_ENGINE = "identity.session_stores.cached_db" if REDIS_URL else "identity.session_stores.db"
SESSION_COOKIE_AGE = 60 * 60 * 12
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
CSRF_COOKIE_SAMESITE = "Lax"
SECURE_SSL = _issuer.scheme == "https"
SESSION_COOKIE_SECURE = SECURE_SSL
CSRF_COOKIE_SECURE = SECURE_SSL
SESSION_COOKIE_NAME = "__Host-session" if SECURE_SSL else "session"
CSRF_COOKIE_NAME = "__Host-csrf" if SECURE_SSL else "csrf"
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS", [f"{_issuer.scheme}://{_issuer.netloc}"])
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
if PRODUCTION:
    SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 60 * 60 * 24 * 365)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("SECURE_HSTS_INCLUDE_SUBDOMAINS", True)
    SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", True)
    SECURE_REDIRECT_EXEMPT = [r"^healthz$", r"^readyz$"]

# --- Proxies in front of us (docs/operators.md, "Proxies and the client address") ------------
# A header is trusted only when the operator said a proxy of ours writes it: a client can
# send X-Forwarded-For / X-Forwarded-Proto itself. Production has no default for either:
# a wrong guess either lets anyone pick their address (defeating the per-IP sign-in limits,
# polluting audit fingerprints) or makes plain HTTP look secure.
if PRODUCTION:
    BEHIND_TLS_PROXY = env_required_bool(
        "BEHIND_TLS_PROXY", why="true if a TLS-terminating proxy of ours sets X-Forwarded-Proto, else false"
    )
    TRUSTED_PROXY_COUNT = env_required_int(
        "TRUSTED_PROXY_COUNT", why="0 if clients connect to us directly, else the number of proxies"
    )
else:
    BEHIND_TLS_PROXY = env_bool("BEHIND_TLS_PROXY", False)
    TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 or more")
# How many proxies in front of us append to X-Forwarded-For (0 = use REMOTE_ADDR);
# common.ratelimit.client_ip takes the N-th address from the right.
if BEHIND_TLS_PROXY:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")

# Sign-in throttling (identity/ratelimit.py).
LOGIN_RATE_LIMIT = {
    "per_account": env_int("LOGIN_MAX_FAILURES_PER_ACCOUNT", 10),
    "per_ip": env_int("LOGIN_MAX_FAILURES_PER_IP", 50),
    "window_seconds": env_int("LOGIN_FAILURE_WINDOW_SECONDS", 15 * 60),
    "account_lock_seconds": env_int("LOGIN_ACCOUNT_LOCK_SECONDS", 5 * 60),
}
# Forms that send an email (registration, resending the verification link, forgotten
# password, a signed-in resident's change of email address; identity/ratelimit.py):
# submissions per client address, and emails to one address (over the limit they are
# skipped silently), within a window.
FORM_RATE_LIMIT = {
    action: {
        "per_ip": env_int("FORM_MAX_PER_IP", 10),
        "per_email": env_int("FORM_MAX_EMAILS_PER_ADDRESS", 3),
        "window_seconds": env_int("FORM_WINDOW_SECONDS", 60 * 60),
    }
    for action in ("register", "resend", "password_reset", "email_change")
}
# Second-factor codes (identity/mfa/models.py, django-otp's throttle): after n wrong codes
# in a row, the next one is refused for MFA_THROTTLE_FACTOR · 2^(n-1) seconds.
MFA_THROTTLE_FACTOR = env_int("MFA_THROTTLE_FACTOR", 1)
# Choices posted by the cookie-consent widget (consent/api/views.py), per client address.
CONSENT_COOKIE_RATE_LIMIT = {
    "per_ip": env_int("CONSENT_COOKIE_MAX_PER_IP", 60),
    "window_seconds": env_int("CONSENT_COOKIE_WINDOW_SECONDS", 10 * 60),
}
# Page views sent to the profiles API (profiles/api/views.py, POST /profiles/api/v1/page-views):
# accepted events (personalisation-browsing granted; refused ones are never counted) per
# client address for partner pages, per partner for partner back-ends (one address carries
# every resident's events), within the window; HTTP 429 beyond.
PROFILES_PAGE_VIEW_RATE_LIMIT = {
    "per_ip": env_int("PROFILES_PAGE_VIEWS_MAX_PER_IP", 300),
    "per_client": env_int("PROFILES_PAGE_VIEWS_MAX_PER_CLIENT", 60_000),
    "window_seconds": env_int("PROFILES_PAGE_VIEWS_WINDOW_SECONDS", 10 * 60),
}

# Linking a partner account from Mon compte (connectors/links.py: a library card and its PIN):
# attempts per card (keyed hash of the card number) and per account within a window. Every
# attempt counts, even when the partner is down (the count and the check are one atomic step).
CONNECTOR_LINK_RATE_LIMIT = {
    "per_reference": env_int("CONNECTOR_LINK_MAX_PER_CARD", 5),
    "per_account": env_int("CONNECTOR_LINK_MAX_PER_ACCOUNT", 10),
    "window_seconds": env_int("CONNECTOR_LINK_WINDOW_SECONDS", 15 * 60),
}

# Public receipt verifications (the page /recus/verifier/ and its API, consent/views_receipts.py
# and consent/api/receipts.py), per client address: each one checks signatures.
CONSENT_RECEIPT_VERIFY_RATE_LIMIT = {
    "per_ip": env_int("CONSENT_RECEIPT_VERIFY_MAX_PER_IP", 30),
    "window_seconds": env_int("CONSENT_RECEIPT_VERIFY_WINDOW_SECONDS", 10 * 60),
}

# --- Request size (config/request_limits.py, docs/operators.md "Request limits") ------------
# Bodies are bounded before any view reads them: a body announced or sent (chunked, without
# Content-Length) beyond the limit is answered 413 without being read further. Form and JSON
# bodies: Django's own DATA_UPLOAD_MAX_MEMORY_SIZE; multipart bodies (the one upload, a
# partner's answer file of 5 MB in the admin) REQUEST_MULTIPART_MAX_BYTES, their files
# spooled to disk beyond FILE_UPLOAD_MAX_MEMORY_SIZE.
DATA_UPLOAD_MAX_MEMORY_SIZE = env_int("DATA_UPLOAD_MAX_MEMORY_SIZE", 2_621_440)  # Django's default, 2.5 MiB
DATA_UPLOAD_MAX_NUMBER_FIELDS = env_int("DATA_UPLOAD_MAX_NUMBER_FIELDS", 1000)
REQUEST_MULTIPART_MAX_BYTES = env_int("REQUEST_MULTIPART_MAX_BYTES", 8 * 1024 * 1024)

# --- Internationalisation ---------------------------------------------------------------
LANGUAGE_CODE = "fr"
LANGUAGES = [("fr", _("Français")), ("en", _("English"))]
LOCALE_PATHS = [BASE_DIR / "locale"]
LANGUAGE_COOKIE_NAME = "language"
LANGUAGE_COOKIE_SAMESITE: Literal["Lax", "Strict", "None"] = "Lax"
LANGUAGE_COOKIE_SECURE = SECURE_SSL
TIME_ZONE = "Europe/Paris"
USE_I18N = True
USE_TZ = True

# --- Static files -----------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = BASE_DIR / "staticfiles"
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# --- Email ----------------------------------------------------------------------------
# Emails to residents are queued in the outbox and sent by `manage.py outbox_worker`
# (identity/emails.py, connectors/handlers.py), never inside a request. Outside production
# they are printed by the console backend; production names its backend and, for SMTP,
# its host: links in these emails are secrets (reset, verification, "Ce n'était pas vous ?")
# and must not end up in logs or nowhere. identity/checks.py also checks the class.
UNSAFE_PRODUCTION_EMAIL_BACKENDS = {
    f"django.core.mail.backends.{name}.EmailBackend" for name in ("console", "locmem", "filebased", "dummy")
}
SMTP_EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
if PRODUCTION:
    EMAIL_BACKEND = env_required_str("EMAIL_BACKEND", why=f"e.g. {SMTP_EMAIL_BACKEND}")
    if EMAIL_BACKEND in UNSAFE_PRODUCTION_EMAIL_BACKENDS:
        raise ImproperlyConfigured(
            f"EMAIL_BACKEND {EMAIL_BACKEND} delivers no email; production needs a real one "
            f"(e.g. {SMTP_EMAIL_BACKEND})"
        )
    EMAIL_HOST = env_str("EMAIL_HOST") or ""
    if EMAIL_BACKEND == SMTP_EMAIL_BACKEND and not EMAIL_HOST:
        raise ImproperlyConfigured("EMAIL_HOST (the SMTP relay) is required in production")
else:
    EMAIL_BACKEND = env_str("EMAIL_BACKEND") or "django.core.mail.backends.console.EmailBackend"
    EMAIL_HOST = env_str("EMAIL_HOST") or "localhost"
# Prometheus metrics at /metrics (config/metrics_view.py): the scraper's bearer token; the
# endpoint answers 404 while it is unset. Several worker processes per node: also set
# PROMETHEUS_MULTIPROC_DIR (read by prometheus_client itself; docs/operations.md).
METRICS_TOKEN = env_str("METRICS_TOKEN", "") or ""
if METRICS_TOKEN and len(METRICS_TOKEN) < 32:
    raise ImproperlyConfigured("METRICS_TOKEN must be at least 32 characters (a random secret)")
# Readiness reports the outbox as late (degraded, still serving) when no outbox worker has
# beaten for this long (connectors.heartbeat; a worker beats every 10 s while it runs).
OUTBOX_HEARTBEAT_LATE_SECONDS = env_int("OUTBOX_HEARTBEAT_LATE_SECONDS", 60)
if OUTBOX_HEARTBEAT_LATE_SECONDS < 20:
    raise ImproperlyConfigured("OUTBOX_HEARTBEAT_LATE_SECONDS must be at least 20 (two heartbeats)")
# Retries of outbox deliveries (connectors.outbox.backoff_delay): exponential backoff with
# jitter from OUTBOX_RETRY_BASE_SECONDS, capped at OUTBOX_RETRY_MAX_SECONDS between attempts.
OUTBOX_RETRY_BASE_SECONDS = env_int("OUTBOX_RETRY_BASE_SECONDS", 5)
OUTBOX_RETRY_MAX_SECONDS = env_int("OUTBOX_RETRY_MAX_SECONDS", 60 * 60)
if not 1 <= OUTBOX_RETRY_BASE_SECONDS <= OUTBOX_RETRY_MAX_SECONDS:
    raise ImproperlyConfigured(
        "OUTBOX_RETRY_BASE_SECONDS must be at least 1 and at most OUTBOX_RETRY_MAX_SECONDS"
    )
# Seconds per SMTP operation: the worker's lease on a message (connectors.outbox) is longer.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
if EMAIL_TIMEOUT < 1:
    raise ImproperlyConfigured("EMAIL_TIMEOUT must be at least 1 second")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "Compte unique métropolitain <no-reply@localhost>")

# --- OAuth 2.0 / OpenID Connect (django-oauth-toolkit behind identity/oidc/) ---------------
OAUTH2_PROVIDER_APPLICATION_MODEL = "identity.Client"
OAUTH2_PROVIDER_GRANT_MODEL = "identity.AuthorizationCode"
OAUTH2_PROVIDER_ACCESS_TOKEN_MODEL = "identity.AccessToken"
OAUTH2_PROVIDER_REFRESH_TOKEN_MODEL = "identity.RefreshToken"
OAUTH2_PROVIDER_ID_TOKEN_MODEL = "identity.IDToken"

# RFC 9068 access tokens: ES256 signs in ~0.03 ms (RS256 with our 3072-bit key: ~1 ms).
ACCESS_TOKEN_SIGNING_ALG = env_str("ACCESS_TOKEN_SIGNING_ALG", "ES256")
if ACCESS_TOKEN_SIGNING_ALG not in ("ES256", "RS256"):
    raise ImproperlyConfigured("ACCESS_TOKEN_SIGNING_ALG must be ES256 or RS256")

# The token endpoint: our own implementation (identity/oidc/token_endpoint.py), or
# django-oauth-toolkit/oauthlib's, kept as the reference the differential test compares it with.
TOKEN_ENDPOINT = env_str("TOKEN_ENDPOINT", "native")
if TOKEN_ENDPOINT not in ("native", "oauthlib"):
    raise ImproperlyConfigured("TOKEN_ENDPOINT must be native or oauthlib")

# The authorization endpoint's code, once its checks passed in the same request: written
# directly (identity/oidc/code_issuance.py), or by django-oauth-toolkit/oauthlib's
# create_authorization_response, which validates the request again (the reference).
AUTHORIZE_ISSUANCE = env_str("AUTHORIZE_ISSUANCE", "native")
if AUTHORIZE_ISSUANCE not in ("native", "oauthlib"):
    raise ImproperlyConfigured("AUTHORIZE_ISSUANCE must be native or oauthlib")

OAUTH2_PROVIDER: dict[str, Any] = {
    "OAUTH2_VALIDATOR_CLASS": "identity.oidc.request_validator.Validator",
    "OAUTH2_SERVER_CLASS": "identity.oidc.server.Server",
    "OAUTH2_BACKEND_CLASS": "identity.oidc.oauthlib_core.OAuthLibCore",
    "OIDC_SERVER_CLASS": "identity.oidc.server.Server",
    # Scopes come from the claims registry (identity/oidc/claims/), not from settings.
    "SCOPES_BACKEND_CLASS": "identity.oidc.claims.RegistryScopes",
    "DEFAULT_SCOPES": ["openid"],
    "OIDC_ENABLED": True,
    "OIDC_ISS_ENDPOINT": ISSUER,
    "OIDC_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_RESPONSE_TYPES_SUPPORTED": ["code"],
    "OAUTH2_GRANT_TYPES_SUPPORTED": ["authorization_code", "client_credentials", "refresh_token"],
    "OIDC_SUBJECT_TYPES_SUPPORTED": ["public"],
    "OIDC_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_basic", "client_secret_post", "none"],
    "OAUTH2_TOKEN_ENDPOINT_AUTH_METHODS_SUPPORTED": ["client_secret_basic", "client_secret_post", "none"],
    "OIDC_RP_INITIATED_LOGOUT_ENABLED": True,
    "OIDC_RP_INITIATED_LOGOUT_ALWAYS_PROMPT": False,
    "OIDC_RP_INITIATED_LOGOUT_STRICT_REDIRECT_URIS": True,
    "OIDC_RP_INITIATED_LOGOUT_ACCEPT_EXPIRED_TOKENS": True,
    "OIDC_RP_INITIATED_LOGOUT_DELETE_TOKENS": True,
    "AUTHORIZATION_CODE_EXPIRE_SECONDS": 60,
    "ACCESS_TOKEN_EXPIRE_SECONDS": 60 * 10,
    # Access tokens are signed JWTs (RFC 9068, identity/oidc/access_tokens.py); refresh
    # tokens stay opaque random strings (only their SHA-256 is stored).
    "ACCESS_TOKEN_GENERATOR": "identity.oidc.access_tokens.generate",
    "REFRESH_TOKEN_GENERATOR": "oauthlib.oauth2.rfc6749.tokens.random_token_generator",
    "ID_TOKEN_EXPIRE_SECONDS": 60 * 10,
    "REFRESH_TOKEN_EXPIRE_SECONDS": 60 * 60 * 24 * 14,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_REUSE_PROTECTION": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,
    "PKCE_REQUIRED": True,
    "REQUEST_APPROVAL_PROMPT": "auto",
    "ALLOWED_REDIRECT_URI_SCHEMES": ["https", "http"],
    "ALLOW_URI_WILDCARDS": False,
    "ALLOW_LOCALHOST_LOOPBACK": False,
    "COMPLIANT_BCP_RFC9700_IMPLICIT_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": True,
    "COMPLIANT_BCP_RFC9700_PKCE_METHOD": True,
    "COMPLIANT_BCP_RFC9700_ACCESS_TOKEN_TRANSPORT": True,
    "COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS": True,
    "COMPLIANT_BCP_RFC9700_TOKEN_STORAGE": True,
    "COMPLIANT_BCP_RFC9700_REFRESH_TOKEN": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_MATCHING": True,
    "COMPLIANT_BCP_RFC9700_PKCE_REQUIRED": True,
    "COMPLIANT_BCP_RFC9700_REDIRECT_URI_SCHEME": False,
    "ALWAYS_RELOAD_OAUTHLIB_CORE": False,
}

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": ["rest_framework.authentication.SessionAuthentication"],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "EXCEPTION_HANDLER": "common.problems.drf_exception_handler",
    # DRF's parsers, JSON nested too deeply answered 400 like any malformed JSON (common/json_input.py).
    "DEFAULT_PARSER_CLASSES": [
        "common.json_input.JSONParser",
        "rest_framework.parsers.FormParser",
        "rest_framework.parsers.MultiPartParser",
    ],
    "UNAUTHENTICATED_USER": None,
    # drf-spectacular describes every DRF view (config/api_docs.py, common/openapi.py).
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
}

# --- OpenAPI description of the REST APIs (drf-spectacular; config/api_docs.py) ------------------
# Served at /api/schema/ (YAML, or JSON with ?format=json or Accept: application/vnd.oai.openapi+json)
# and browsable at /api/docs/ (Swagger UI from drf-spectacular-sidecar, our own static files).
# Shared pieces for every app's API (the RFC 7807 Problem, problem_responses, the session and
# CSRF security schemes) are in common/openapi.py. `manage.py spectacular --validate
# --fail-on-warn` must stay clean (tests/api/test_openapi.py).
SPECTACULAR_SETTINGS: dict[str, Any] = {
    "TITLE": "Compte unique métropolitain API",
    "VERSION": "1.0.0",  # of this description; the paths carry the API's major version (/v1/)
    "OAS_VERSION": "3.1.0",
    "DESCRIPTION": (
        "The REST APIs of Nantes Métropole's single account: the cookie-consent API for partner "
        "sites (`/consent/api/v1/cookie/…`, anonymous and cross-origin: a registered `client_id` "
        "and, for writes, an `Origin` registered on that client), the public receipt verification "
        "(`/consent/api/v1/receipts/verify`, anonymous) and the DPO's API (`/dpo/api/v1/…`, the "
        "session cookie of a member of the `dpo` staff group signed in with two factors, and the "
        "CSRF token on writes); the profiles API (`/profiles/api/v1/…`): the signed-in resident's "
        "declared profile and interests (session cookie, CSRF token on writes), the public "
        "taxonomy, and for partners page views and personalisation, from a page (a registered "
        "`client_id`, its `Origin`, the cookie widget's browser id and secret) or from a back-end "
        "(a resident's access token issued to the partner, `Authorization: Bearer`).\n\n"
        "Errors are RFC 7807 problem details (`application/problem+json`, the `Problem` "
        "component): a stable `type` URN (`urn:cum:problem:<code>`) and `code`, a translated "
        "`title`, and `errors` naming each faulty field.\n\n"
        "Not described here: the OpenID Connect and OAuth 2.0 protocol endpoints (`/authorize`, "
        "`/token`, `/userinfo`, `/introspect`, `/revoke`, `/par`, `/jwks.json`, logout), which "
        "are plain Django views described by the OpenID Connect discovery document "
        "(`/.well-known/openid-configuration`), and the pages for people (Mon compte, the DPO "
        "console, the resident's receipt download). Partners' guide: docs/partners.md."
    ),
    # The groups of operations, in this order.
    "TAGS": [
        {
            "name": "Cookie consent",
            "description": "The cookie banner of partner sites (the widget, docs/partners.md). Anonymous "
            "and cross-origin: CORS headers (and the OPTIONS preflight) only for the origins "
            "registered on the partner's client; credentials are never allowed cross-origin.",
        },
        {"name": "Receipts", "description": "Anyone checks a consent receipt and its inclusion proof."},
        {
            "name": "DPO",
            "description": "The data protection officer's API: the same data and the same audit of "
            "reads as the DPO console (/dpo/). A member of the `dpo` staff group, signed in with two "
            "factors; every request is audited.",
        },
        {
            "name": "Profiles",
            "description": "The signed-in resident's declared profile and inferred interests (session "
            "cookie, CSRF token on writes), each field used only while its purpose is granted; the "
            "public taxonomy of themes, communes and preferences.",
        },
        {
            "name": "Personalisation (partners)",
            "description": "Partner sites send page views and read what they may use, from a page "
            "(CORS for the client's registered origins, the cookie widget's browser id and secret) "
            "or from a back-end (a resident's access token); only while the purposes, and for a "
            "resident the sharing consent, are granted (docs/partners.md, Personalisation).",
        },
    ],
    # No `servers`: every path is relative to the host that served the description.
    "SERVERS": [],
    # Distinct components for what a client sends and what it receives (read-only fields).
    "COMPONENT_SPLIT_REQUEST": True,
    # The description is public, like the partner guide it completes: it documents the
    # partners' cookie API and the public receipt check, and names the DPO API's paths and
    # shapes, which hold no secret (the data stays behind the DPO's MFA session). Served
    # to anyone without a session (no authentication, so no CSRF either) and the same for
    # everyone (`SERVE_PUBLIC`: not filtered by the caller's permissions).
    "SERVE_PUBLIC": True,
    "SERVE_PERMISSIONS": ["rest_framework.permissions.AllowAny"],
    "SERVE_AUTHENTICATION": [],
    # The schema endpoint does not describe itself.
    "SERVE_INCLUDE_SCHEMA": False,
    # One component per vocabulary of the ledger, whatever the field that uses it is called.
    "ENUM_NAME_OVERRIDES": {
        "EventTypeEnum": "consent.api.schema.EVENT_TYPES",
        "CollectionMethodEnum": "consent.api.schema.COLLECTION_METHODS",
        "ActorTypeEnum": "consent.api.schema.ACTOR_TYPES",
    },
    # Our choices are codes whose label is the code itself: no "* `given` - given" lists.
    "ENUM_GENERATE_CHOICE_DESCRIPTION": False,
    # Swagger UI's files from drf-spectacular-sidecar (static files), never a CDN.
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    # No request to swagger.io's validator (validatorUrl); links to each operation (deepLinking).
    "SWAGGER_UI_SETTINGS": {"validatorUrl": None, "deepLinking": True},
}

# RFC 9700 §2.1 / RFC 8252 §7.3: plain http redirect URIs only on loopback, and in
# production only when an operator opts in for native apps.
ALLOW_HTTP_LOOPBACK_REDIRECTS = env_bool("ALLOW_HTTP_LOOPBACK_REDIRECTS", default=not PRODUCTION)
OAUTH2_PROVIDER["ALLOWED_REDIRECT_URI_SCHEMES"] = (
    ["https", "http"] if ALLOW_HTTP_LOOPBACK_REDIRECTS else ["https"]
)

# Refresh tokens of public clients (single-page and mobile apps) expire after this many
# seconds without use (RFC 9700 §4.14.2; identity/oidc/refresh_policy.py); they also rotate.
OIDC_PUBLIC_CLIENT_REFRESH_IDLE_SECONDS = env_int("OIDC_PUBLIC_CLIENT_REFRESH_IDLE_SECONDS", 60 * 60 * 24)

# DPoP (RFC 9449; identity/oidc/dpop.py). A proof's iat may be this far ahead or this old.
DPOP_PROOF_LEEWAY_SECONDS = env_int("DPOP_PROOF_LEEWAY_SECONDS", 60)
DPOP_PROOF_MAX_AGE_SECONDS = env_int("DPOP_PROOF_MAX_AGE_SECONDS", 300)
# Server-provided nonces (RFC 9449 §8, §9) at the token endpoint, PAR and userinfo: a nonce
# lives one to two steps; required by default (a proof cannot be made in advance).
DPOP_NONCE_REQUIRED = env_bool("DPOP_NONCE_REQUIRED", default=True)
DPOP_NONCE_STEP_SECONDS = env_int("DPOP_NONCE_STEP_SECONDS", 300)

DEMO_ENABLED = env_bool("DEMO_ENABLED", default=not PRODUCTION)

# --- Logging: ids, never personal data ------------------------------------------------------
# Logs (common/request_log.py): one JSON object per line in production (LOG_FORMAT=json),
# readable text elsewhere; each record carries the request id. The access line of every
# request is logger `cum.access` (ACCESS_LOG=false silences it, e.g. when the proxy logs).
LOG_FORMAT = env_str("LOG_FORMAT", "json" if PRODUCTION else "text")
if LOG_FORMAT not in {"json", "text"}:
    raise ImproperlyConfigured("LOG_FORMAT must be json or text")
# Take the request id from the proxy's X-Request-ID (only when our proxies set it).
REQUEST_ID_FROM_PROXY = env_bool("REQUEST_ID_FROM_PROXY", TRUSTED_PROXY_COUNT > 0)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"request_id": {"()": "common.request_log.RequestIdFilter"}},
    "formatters": {
        "text": {"format": "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"},
        "json": {"()": "common.request_log.JsonFormatter"},
    },
    "handlers": {
        "console": {"class": "logging.StreamHandler", "formatter": LOG_FORMAT, "filters": ["request_id"]}
    },
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {
        "cum.access": {"level": "INFO" if env_bool("ACCESS_LOG", True) else "WARNING"},
        # oauthlib logs request bodies (secrets, codes) at DEBUG.
        "oauthlib": {"level": "WARNING"},
        "oauth2_provider": {"level": "WARNING"},
        "django.db.backends": {"level": "WARNING"},
    },
}

# --- FranceConnect (identity/franceconnect/; docs/operators.md) ------------------------------
# We are a FranceConnect v2 relying party ("fournisseur de service"). Outside production the
# integration platform is the default (reachable only with integration credentials); in
# production the operator sets the issuer and credentials given by FranceConnect.
FRANCECONNECT_ENABLED = env_bool("FRANCECONNECT_ENABLED", default=not PRODUCTION)
FRANCECONNECT_ISSUER = (
    env_str("FRANCECONNECT_ISSUER") or "https://fcp-low.sbx.dev-franceconnect.fr/api/v2"
).rstrip("/")
FRANCECONNECT_CLIENT_ID = env_str("FRANCECONNECT_CLIENT_ID") or ""
FRANCECONNECT_CLIENT_SECRET = env_str("FRANCECONNECT_CLIENT_SECRET") or ""
FRANCECONNECT_SCOPES = (
    env_str("FRANCECONNECT_SCOPES")
    or "openid given_name family_name birthdate gender birthplace birthcountry email preferred_username"
).split()
FRANCECONNECT_ACR = env_str("FRANCECONNECT_ACR") or "eidas1"
# Sent as `prompt` on authorize; empty to send none.
FRANCECONNECT_PROMPT = env_str("FRANCECONNECT_PROMPT", "login consent") or ""
FRANCECONNECT_TIMEOUT = env_int("FRANCECONNECT_TIMEOUT", 5)  # seconds, per upstream HTTP call
FRANCECONNECT_DISCOVERY_CACHE_SECONDS = env_int("FRANCECONNECT_DISCOVERY_CACHE_SECONDS", 60 * 60)
if FRANCECONNECT_ENABLED:
    _fc_issuer = urlsplit(FRANCECONNECT_ISSUER)
    if _fc_issuer.scheme not in {"http", "https"} or not _fc_issuer.netloc:
        raise ImproperlyConfigured("FRANCECONNECT_ISSUER must be an absolute https URL")
    if PRODUCTION and _fc_issuer.scheme != "https":
        raise ImproperlyConfigured("FRANCECONNECT_ISSUER must use https in production")
    if PRODUCTION and not (FRANCECONNECT_CLIENT_ID and FRANCECONNECT_CLIENT_SECRET):
        raise ImproperlyConfigured(
            "FRANCECONNECT_CLIENT_ID and FRANCECONNECT_CLIENT_SECRET are required when FRANCECONNECT_ENABLED"
        )
    if "openid" not in FRANCECONNECT_SCOPES:
        raise ImproperlyConfigured("FRANCECONNECT_SCOPES must include openid")
    if FRANCECONNECT_ACR not in {"eidas1", "eidas2", "eidas3"}:
        raise ImproperlyConfigured("FRANCECONNECT_ACR must be eidas1, eidas2 or eidas3")
    if FRANCECONNECT_TIMEOUT < 1:
        raise ImproperlyConfigured("FRANCECONNECT_TIMEOUT must be at least 1 second")
# --- end of FranceConnect ---------------------------------------------------------------------

# --- Consent ledger (consent/; docs/ledger.md) -----------------------------------------------
# Wraps each subject's data key (AES-256-GCM). Urlsafe base64 of 32 random bytes. Outside
# production, left empty it is derived from SECRET_KEY (consent/crypto.py), like
# KEY_ENCRYPTION_KEY. Losing it makes every encrypted consent detail unreadable.
CONSENT_MASTER_KEY = env_str("CONSENT_MASTER_KEY") or ""
if PRODUCTION and not CONSENT_MASTER_KEY:
    raise ImproperlyConfigured(
        "CONSENT_MASTER_KEY (urlsafe base64 of 32 random bytes) is required in production"
    )
CONSENT_POLICY_URL = env_str("CONSENT_POLICY_URL") or f"{ISSUER}/confidentialite/"
# The controller named in consent receipts (Kantara piiControllers, ISO/IEC TS 27560 parties).
CONSENT_CONTROLLER = {
    "name": env_str("CONSENT_CONTROLLER_NAME") or "Nantes Métropole",
    "contact": env_str("CONSENT_CONTROLLER_CONTACT") or "Délégué à la protection des données",
    "address": env_str("CONSENT_CONTROLLER_ADDRESS") or "2 cours du Champ de Mars, 44923 Nantes Cedex 9",
    "email": env_str("CONSENT_CONTROLLER_EMAIL") or "dpo@nantesmetropole.fr",
    "phone": env_str("CONSENT_CONTROLLER_PHONE") or "+33 2 40 99 48 48",
    "url": env_str("CONSENT_CONTROLLER_URL") or "https://metropole.nantes.fr",
}
# Where residents report an accessibility problem (the accessibility statement,
# /accessibilite/). Defaults to the controller's address above until the authority names
# its accessibility contact.
ACCESSIBILITY_CONTACT_EMAIL = env_str("ACCESSIBILITY_CONTACT_EMAIL") or CONSENT_CONTROLLER["email"]

# --- Data-rights requests (consent/rights_requests.py; docs/dpo.md, docs/operators.md) --------
# How long a ready export archive (a copy of everything held about a resident, GDPR Art. 15
# and 20) can be downloaded, in days. Its encrypted bytes are deleted from the database at
# the first download or once this has passed, whichever comes first.
RIGHTS_EXPORT_DOWNLOAD_DAYS = env_int("RIGHTS_EXPORT_DOWNLOAD_DAYS", 7)
# How many exports a resident may ask for per 24 hours (each one reads every table about
# them and is kept in the database until downloaded).
RIGHTS_EXPORT_MAX_PER_DAY = env_int("RIGHTS_EXPORT_MAX_PER_DAY", 3)
# How long an export waits for the partners that answer by themselves (connectors with an API:
# library, transport…), in seconds, before the archive is built with what arrived. A partner
# answering later (or by email, through an operator) joins a new version of the archive.
RIGHTS_EXPORT_PARTNER_WAIT = env_int("RIGHTS_EXPORT_PARTNER_WAIT", 300)

# --- OIDC subjects and keys (identity/oidc/subjects.py, identity/keys.py) ----------------------
# Pairwise subject identifiers (OpenID Connect Core §8.1) are HMAC-SHA-256 under this key.
# Changing it changes every resident's `sub` at every partner: set it once and keep it.
# At least 32 characters. Outside production, left empty it is derived from SECRET_KEY
# (HKDF, identity/oidc/subjects.py), like KEY_ENCRYPTION_KEY.
PAIRWISE_SUBJECT_KEY = env_str("PAIRWISE_SUBJECT_KEY") or ""
if PRODUCTION and len(PAIRWISE_SUBJECT_KEY) < 32:
    raise ImproperlyConfigured(
        "PAIRWISE_SUBJECT_KEY (at least 32 random characters) is required in production"
    )
# How long relying parties may cache /jwks.json (Cache-Control max-age), and how long a
# rotated-in key is published before it signs (`rotate_keys --publish-ahead-seconds`).
OIDC_JWKS_MAX_AGE_SECONDS = env_int("OIDC_JWKS_MAX_AGE_SECONDS", 300)
OIDC_KEY_PUBLISH_AHEAD_SECONDS = env_int("OIDC_KEY_PUBLISH_AHEAD_SECONDS", 60 * 60)
if OIDC_KEY_PUBLISH_AHEAD_SECONDS < OIDC_JWKS_MAX_AGE_SECONDS:
    raise ImproperlyConfigured("OIDC_KEY_PUBLISH_AHEAD_SECONDS must be at least OIDC_JWKS_MAX_AGE_SECONDS")
# Back-channel logout tokens are built when delivered, and live this long (seconds).
OIDC_LOGOUT_TOKEN_EXPIRE_SECONDS = env_int("OIDC_LOGOUT_TOKEN_EXPIRE_SECONDS", 120)
# --- end of OIDC subjects and keys ------------------------------------------------------------

# --- Account erasure (consent/erasure.py; docs/operators.md, docs/dpo.md) ----------------------
# Days between a resident's request to delete the account and the erasure (GDPR Art. 17):
# the account keeps working and the request can be cancelled from the email or by signing in.
ERASURE_GRACE_DAYS = env_int("ERASURE_GRACE_DAYS", 7)
# Accounts with no sign-in for this many days are erased (`manage.py erase_inactive_accounts`,
# run daily by cron): 3 years, the CNIL's usual guidance. Set by the DPO.
ERASURE_INACTIVE_AFTER_DAYS = env_int("ERASURE_INACTIVE_AFTER_DAYS", 3 * 365)
# How many days before that the resident is warned by email (signing in keeps the account).
ERASURE_INACTIVE_WARNING_DAYS = env_int("ERASURE_INACTIVE_WARNING_DAYS", 30)
