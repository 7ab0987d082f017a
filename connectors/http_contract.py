"""The client side of our JSON-over-HTTPS partner contracts (docs/connectors/transport.md,
docs/connectors/ticketing.md): configuration checks, one bounded call, answers read as the
contracts say. Used by the connectors that speak such a contract (connectors.transport,
connectors.ticketing); no Django inside.

Configuration (a `PartnerConnector`'s `config` and `secrets`, docs/operators.md):

- `base_url` (required): https, or http on a loopback address (the simulators);
- `connect_timeout`, `read_timeout` (seconds, default `DEFAULT_TIMEOUT`, capped at
  `MAX_TIMEOUT`: the resident's page waits on link and refresh);
- the secret `api_key` (required), sent as `Authorization: Bearer <api_key>` over TLS.

Every request goes through `common.outbound` (no redirects followed) and reads at most
`MAX_ANSWER_BYTES` of the answer (a client may allow more, e.g. for an export). Writes
carry the outbox message's idempotency key in `Idempotency-Key`. Failures are the connector protocol's errors:

- `PartnerUnavailable`: no answer in time (`partner_timeout`), connection refused, 5xx, 429,
  our API key refused (`partner_login_refused`): try again later;
- `PartnerProtocolError`: an answer that is not the contract's JSON object (garbage, a
  redirect, too large).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from common.outbound import open_without_redirects
from connectors.protocol import ConnectorConfigError, PartnerProtocolError, PartnerUnavailable

DEFAULT_TIMEOUT = 3.0
MAX_TIMEOUT = 5.0
MAX_ANSWER_BYTES = 64 * 1024
CONFIG_KEYS = ("base_url", "connect_timeout", "read_timeout")
SECRET_KEYS = ("api_key",)


@dataclass(frozen=True)
class ContractConfig:
    base_url: str
    api_key: str
    timeout: float


def timeout_setting(config: Mapping[str, Any], key: str, *, maximum: float = MAX_TIMEOUT) -> float:
    """A timeout of a connector's configuration, in seconds: positive, capped at `maximum`
    (ConnectorConfigError otherwise). Also used by the SCIM connector, with its own cap."""
    try:
        value = float(config.get(key, DEFAULT_TIMEOUT))
    except (TypeError, ValueError):
        raise ConnectorConfigError(f"{key} is not a number") from None
    if value <= 0:
        raise ConnectorConfigError(f"{key} must be positive")
    return min(value, maximum)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def checked_base_url(config: Mapping[str, Any]) -> str:
    """A partner's `base_url`: https (http only on a loopback address, for simulators), no
    query, fragment or credentials, without its trailing slash (ConnectorConfigError otherwise)."""
    base_url = str(config.get("base_url") or "").rstrip("/")
    parts = urlsplit(base_url)
    if parts.scheme not in {"https", "http"} or not parts.hostname:
        raise ConnectorConfigError("base_url must be an https URL")
    if parts.scheme == "http" and not _loopback(parts.hostname):
        raise ConnectorConfigError("base_url must be https (http only on a loopback address)")
    if parts.query or parts.fragment or parts.username:
        raise ConnectorConfigError("base_url takes no query, fragment or credentials")
    return base_url


def contract_config(config: Mapping[str, Any], secrets: Mapping[str, str]) -> ContractConfig:
    """The client's settings (ConnectorConfigError if unusable)."""
    base_url = checked_base_url(config)
    api_key = secrets.get("api_key") or ""
    if not api_key:
        raise ConnectorConfigError("the api_key secret is required")
    timeout = max(timeout_setting(config, "connect_timeout"), timeout_setting(config, "read_timeout"))
    return ContractConfig(base_url=base_url, api_key=api_key, timeout=timeout)


def config_problems(
    config: Mapping[str, Any],
    secrets: Mapping[str, str],
    *,
    config_keys: tuple[str, ...] = CONFIG_KEYS,
    secret_keys: tuple[str, ...] = SECRET_KEYS,
) -> list[str]:
    """A connector's `check_config`: unknown keys, then what `contract_config` refuses."""
    problems = [f"unknown setting {key!r}" for key in config if key not in config_keys]
    problems += [f"unknown secret {key!r}" for key in secrets if key not in secret_keys]
    try:
        contract_config(config, secrets)
    except ConnectorConfigError as exc:
        problems.append(str(exc))
    return problems


class ContractClient:
    """The HTTP client of a contract: JSON in, JSON or RFC 7807 problems out."""

    def __init__(
        self, config: ContractConfig, *, user_agent: str, max_answer_bytes: int = MAX_ANSWER_BYTES
    ) -> None:
        self.config = config
        self.user_agent = user_agent
        self.max_answer_bytes = max_answer_bytes

    def call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None, *, idempotency_key: str = ""
    ) -> tuple[int, dict[str, Any]]:
        """(status, JSON object). PartnerUnavailable: no answer in time, 5xx, 429, our key
        refused; PartnerProtocolError: an answer that is not the contract's JSON."""
        headers = {
            "Authorization": f"Bearer {self.config.api_key}",
            "Accept": "application/json, application/problem+json",
            "User-Agent": self.user_agent,
        }
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if idempotency_key:
            headers["Idempotency-Key"] = idempotency_key
        request = urllib.request.Request(  # noqa: S310 - base_url is checked: http(s) only
            self.config.base_url + path, data=data, headers=headers, method=method
        )
        try:
            with open_without_redirects(request, timeout=self.config.timeout) as response:
                status, raw = response.status, response.read(self.max_answer_bytes + 1)
        except urllib.error.HTTPError as exc:
            status = exc.code
            try:
                raw = exc.read(self.max_answer_bytes + 1)
            except (OSError, TimeoutError):
                raw = b""
            finally:
                exc.close()
        except TimeoutError:
            raise PartnerUnavailable("timeout", code="partner_timeout") from None
        except (urllib.error.URLError, OSError, ValueError) as exc:
            raise PartnerUnavailable(type(exc).__name__) from None
        return self._checked(status, raw)

    def _checked(self, status: int, raw: bytes) -> tuple[int, dict[str, Any]]:
        if status in {401, 403}:
            raise PartnerUnavailable("our API key was refused", code="partner_login_refused")
        if status == 429 or status >= 500:
            raise PartnerUnavailable(f"HTTP {status}")
        if 300 <= status < 400:
            raise PartnerProtocolError(f"unexpected redirect {status}")
        if len(raw) > self.max_answer_bytes:
            raise PartnerProtocolError("answer too large")
        try:
            value = json.loads(raw)
        except ValueError:
            raise PartnerProtocolError(f"HTTP {status}: not JSON") from None
        if not isinstance(value, dict):
            raise PartnerProtocolError(f"HTTP {status}: not a JSON object")
        return status, value


def answer_date(value: Any, name: str) -> date | None:
    """A date of an answer (None when absent); PartnerProtocolError when not an ISO date."""
    if value is None:
        return None
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise PartnerProtocolError(f"{name} is not a date") from None
