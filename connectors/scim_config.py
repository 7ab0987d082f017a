"""The `scim` connector kind's settings and its refusal error (connectors/scim.py): shared by
the connector and its wire (connectors/scim_wire.py) without loading the SCIM libraries."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from connectors.http_contract import checked_base_url, timeout_setting
from connectors.protocol import ConnectorConfigError, ConnectorError

MAX_TIMEOUT = 10.0
DEFAULT_MAX_ATTEMPTS = 10
MAX_MAX_ATTEMPTS = 30
USER_AGENT = "compte-unique-metropolitain/1 (scim connector)"


class ScimRefused(ConnectorError):
    """The partner refused our request for good (a 4xx other than 401, 403, 412, 429)."""

    code = "partner_refused"


@dataclass(frozen=True)
class ScimConfig:
    base_url: str
    bearer_token: str
    connect_timeout: float
    read_timeout: float
    max_attempts: int


def _max_attempts(config: Mapping[str, Any]) -> int:
    value = config.get("max_attempts", DEFAULT_MAX_ATTEMPTS)
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_MAX_ATTEMPTS:
        raise ConnectorConfigError(f"max_attempts must be a whole number from 1 to {MAX_MAX_ATTEMPTS}")
    return value


def scim_config(config: Mapping[str, Any], secrets: Mapping[str, str]) -> ScimConfig:
    """The client's settings (ConnectorConfigError if unusable)."""
    base_url = checked_base_url(config)
    token = secrets.get("bearer_token") or ""
    if not token:
        raise ConnectorConfigError("the bearer_token secret is required")
    return ScimConfig(
        base_url=base_url,
        bearer_token=token,
        connect_timeout=timeout_setting(config, "connect_timeout", maximum=MAX_TIMEOUT),
        read_timeout=timeout_setting(config, "read_timeout", maximum=MAX_TIMEOUT),
        max_attempts=_max_attempts(config),
    )
