"""Reading configuration from the environment. Only `config.settings` calls these."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import overload

from django.core.exceptions import ImproperlyConfigured

TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off", ""}


@overload
def env_str(name: str, default: str) -> str: ...
@overload
def env_str(name: str, default: None = None) -> str | None: ...
def env_str(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return default if value is None else value


def env_bool(name: str, default: bool) -> bool:
    value = os.environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in TRUE:
        return True
    if lowered in FALSE:
        return False
    raise ImproperlyConfigured(f"{name} must be a boolean (true/false), got {value!r}")


def env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        return int(value)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{name} must be an integer, got {value!r}") from exc


def env_list(name: str, default: list[str]) -> list[str]:
    value = os.environ.get(name)
    if value is None:
        return default
    return [item.strip() for item in value.split(",") if item.strip()]


def _required(name: str, why: str) -> str:
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        raise ImproperlyConfigured(f"{name} is required in production ({why})")
    return value


def env_required_str(name: str, *, why: str) -> str:
    """A value production must state: no default, not even an empty one."""
    return _required(name, why).strip()


def env_required_bool(name: str, *, why: str) -> bool:
    _required(name, why)
    return env_bool(name, default=False)


def env_required_int(name: str, *, why: str) -> int:
    _required(name, why)
    return env_int(name, default=0)


def local_secret(var_dir: Path, filename: str, nbytes: int = 48) -> str:
    """A secret generated once into `var/` for local runs; never used in production."""
    var_dir.mkdir(parents=True, exist_ok=True)
    path = var_dir / filename
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:  # another process created it first
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(nbytes))
    return path.read_text().strip()
