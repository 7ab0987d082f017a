"""In-process cache of partner clients by `client_id`: every protocol request reads one.

Freshness contract:

- On this process, a change takes effect at once: `Client.save()` and `Client.delete()`
  (identity/oidc/models.py) and the admin's bulk delete forget the entry, both immediately and
  again after the transaction commits (so that a reader that loaded the old row while the
  change was uncommitted cannot keep it).
- On other processes (other server workers, other nodes), a changed, deleted or
  secret-regenerated client takes effect within CLIENT_CACHE_SECONDS, the entry's lifetime.
- Queryset `.update()` and cascades bypass `save()`/`delete()`: call `client_cache_forget()`
  after them, or live with the TTL.

Misses are not cached, so a newly registered client works at once everywhere. Callers get
their own copy of the instance, never the shared one: a shallow copy, as `copy.copy` makes
of a model instance (its own attribute dict and its own `_state` with its own cache of
related objects), built directly rather than through pickling's protocol (`_copy`).
"""

from __future__ import annotations

import copy
import threading
import time
from typing import Any

from django.db import models, transaction
from oauth2_provider.models import get_application_model

CLIENT_CACHE_SECONDS = 30.0

_lock = threading.Lock()
_entries: dict[str, tuple[float, Any]] = {}
# Bumped by every forget: a lookup that started before a change never stores its result.
_generation = 0


def _copy(client: Any) -> Any:
    """What `copy.copy(client)` gives (Model.__reduce__ → __getstate__ → __setstate__),
    without the pickling protocol's detour: a new instance with a copy of the attribute
    dict and its own ModelState whose cache of related objects is a copy too."""
    if _has_binary_field(type(client)):
        return copy.copy(client)  # memoryview values: Model.__getstate__ converts them
    state = client.__dict__.copy()
    model_state = object.__new__(models.base.ModelState)
    model_state.__dict__.update(state["_state"].__dict__)
    model_state.fields_cache = model_state.fields_cache.copy()
    state["_state"] = model_state
    clone = object.__new__(type(client))
    clone.__dict__.update(state)
    return clone


_binary: dict[type, bool] = {}


def _has_binary_field(model: type) -> bool:
    known = _binary.get(model)
    if known is None:
        known = _binary[model] = any(
            isinstance(field, models.BinaryField)
            for field in model._meta.concrete_fields  # type: ignore[attr-defined]
        )
    return known


def client_cache_get(client_id: str) -> Any | None:
    with _lock:
        hit = _entries.get(client_id)
    if hit is None or hit[0] <= time.monotonic():
        return None
    return _copy(hit[1])


def client_cache_generation() -> int:
    return _generation


def client_cache_put(client: Any, *, generation: int) -> None:
    with _lock:
        if generation != _generation:
            return
        _entries[client.client_id] = (time.monotonic() + CLIENT_CACHE_SECONDS, _copy(client))


def _forget_now(client_id: str | None) -> None:
    global _generation
    with _lock:
        _generation += 1
        if client_id is None:
            _entries.clear()
        else:
            _entries.pop(client_id, None)


def client_cache_clear() -> None:
    """Forget every client now (no database access: for tests and start-up)."""
    _forget_now(None)


def client_cache_forget(client_id: str | None = None) -> None:
    """Forget one client (or all): now, and again once the current transaction commits."""
    _forget_now(client_id)
    transaction.on_commit(lambda: _forget_now(client_id))


def client_by_client_id(client_id: str) -> Any | None:
    """The client registered under `client_id`, or None (cached, see the module docstring)."""

    if not client_id or "\x00" in client_id:
        return None
    cached = client_cache_get(client_id)
    if cached is not None:
        return cached
    generation = client_cache_generation()
    client = get_application_model().objects.filter(client_id=client_id).first()
    if client is not None:
        client_cache_put(client, generation=generation)
    return client
