"""The claims registry: which scopes exist, what each releases, and how to read it.

See the package docstring (identity/oidc/claims/__init__.py) for the API and an example.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.utils.functional import Promise


class ClaimsRegistryError(ImproperlyConfigured):
    """A provider that cannot be registered (duplicate scope or claim, malformed declaration)."""


@dataclass(frozen=True)
class DataCategory:
    """A data category of the ledger's sharing purpose (consent.models.Purpose.data_categories).

    Both languages are stored in the ledger's catalogue (the Art. 30 register reads them), so
    they are plain strings, not translations picked at request time.
    """

    fr: str
    en: str
    kind: str = "declared"  # "declared" by the resident, or "inferred"


@dataclass(frozen=True)
class ScopeSpec:
    """One OAuth scope a provider answers for.

    `what` and `why` are the consent screen's plain-language line ("Votre adresse e-mail",
    "pour vous écrire au sujet de ce service"): French msgids under gettext, translated in
    locale/en. `claim_labels` names each claim for the screen (a claim without a label shows
    its name). `data_category` is what the sharing purpose records in the ledger.
    """

    name: str
    claims: tuple[str, ...]
    what: str | Promise
    why: str | Promise
    data_category: DataCategory
    claim_labels: dict[str, str | Promise] = field(default_factory=dict)


@dataclass(frozen=True)
class ClaimProvider:
    """A source of claims about a resident, for the scopes it declares.

    - `scopes`: the scopes it answers for (each scope belongs to one provider only, each
      claim to one scope only).
    - `read(user, scopes) -> dict`: the claims of the granted `scopes` (a subset of its own)
      for this resident; empty claims are left out. It may return claims of other of its
      scopes: the registry keeps only those under a granted scope.
    - `user_fields`: the columns of `identity.models.User` that `read` uses. Userinfo reads
      them with the token and the ledger's answer in its single statement
      (identity.oidc.access_tokens), so a provider that reads the `User` row alone costs no
      query. A provider with its own tables leaves it empty and queries in `read` (once per
      release: read every claim of the granted scopes at once).
    - `purpose_code`: None when the resident's answer on the consent screen (the sharing
      purpose of the client and its scope set) is all the release needs; otherwise the code
      of a ledger purpose that must also be granted to this resident (one more query), e.g.
      a profile the resident agreed to let the metropolis keep.
    - `client_read(user, scopes, client) -> dict`: optional; when set, releases to a partner
      call it instead of `read`, with the partner client receiving the claims (a claim whose
      content depends on the partner's own configuration, e.g. connectors' `library_card`).
    """

    name: str
    scopes: tuple[ScopeSpec, ...]
    read: Callable[[Any, frozenset[str]], dict[str, Any]]
    user_fields: tuple[str, ...] = ()
    purpose_code: str | None = None
    client_read: Callable[[Any, frozenset[str], Any], dict[str, Any]] | None = None


# Registration happens at start-up (AppConfig.ready) and in tests; reads are hot and take no
# lock: every change builds new tables and swaps them in.
_lock = threading.Lock()
_providers: dict[str, ClaimProvider] = {}
_scope_provider: dict[str, ClaimProvider] = {}
_scope_spec: dict[str, ScopeSpec] = {}
_claim_scope: dict[str, str] = {}
# (provider, the names of its scopes), in registration order: what read_claims walks.
_provider_scopes: tuple[tuple[ClaimProvider, frozenset[str]], ...] = ()
_generation = 0


@dataclass(frozen=True)
class _ScopePlan:
    """What purposes_needed and read_claims work out from a set of scopes alone.

    - `purposes`: {purpose code: the scopes among them it gates}, for the providers that name
      one (purposes_needed's answer, scope_purposes);
    - `readers`: (provider, its scopes among them, the claims those scopes cover) for each
      provider concerned, in registration order (read_claims keeps a claim a provider returns
      only if it is in the third: a claim is released under one scope only).
    """

    purposes: dict[str, tuple[str, ...]]
    readers: tuple[tuple[ClaimProvider, frozenset[str], frozenset[str]], ...]


# The tables a plan is worked out from and the plans worked out from them, per set of scopes,
# swapped in whole by _rebuild (a registry change starts with no plan). Bounded: emptied when
# full (scopes come from signed tokens and validated requests: a handful of sets in practice).
_ProviderScopes = tuple[tuple[ClaimProvider, frozenset[str]], ...]
_Tables = tuple[dict[str, ClaimProvider], dict[str, ScopeSpec], _ProviderScopes]
_plans_state: tuple[_Tables, dict[frozenset[str], _ScopePlan]] = (({}, {}, ()), {})
_PLANS_MAX = 1024


def _scope_plan(scopes: frozenset[str]) -> _ScopePlan:
    """The plan of these scopes, worked out once per registry state (_ScopePlan)."""
    tables, plans = _plans_state
    plan = plans.get(scopes)
    if plan is not None:
        return plan
    scope_provider, scope_spec, provider_scopes = tables
    needed: dict[str, list[str]] = {}
    for scope in scopes:
        provider = scope_provider.get(scope)
        if provider is not None and provider.purpose_code:
            needed.setdefault(provider.purpose_code, []).append(scope)
    readers = []
    for provider, names in provider_scopes:
        own = names & scopes
        if own:
            covered = frozenset(claim for scope in own for claim in scope_spec[scope].claims)
            readers.append((provider, own, covered))
    plan = _ScopePlan({code: tuple(gated) for code, gated in needed.items()}, tuple(readers))
    if len(plans) >= _PLANS_MAX:
        plans.clear()
    plans[scopes] = plan
    return plan


def _rebuild() -> None:
    """Recompute the derived tables and swap them in whole: a reader never sees them half-built."""
    global _scope_provider, _scope_spec, _claim_scope, _provider_scopes, _generation, _plans_state
    scope_provider: dict[str, ClaimProvider] = {}
    scope_spec: dict[str, ScopeSpec] = {}
    claim_scope: dict[str, str] = {}
    for provider in _providers.values():
        for spec in provider.scopes:
            scope_provider[spec.name] = provider
            scope_spec[spec.name] = spec
            for claim in spec.claims:
                claim_scope[claim] = spec.name
    provider_scopes = tuple(
        (provider, frozenset(spec.name for spec in provider.scopes)) for provider in _providers.values()
    )
    _scope_provider, _scope_spec, _claim_scope = scope_provider, scope_spec, claim_scope
    _provider_scopes = provider_scopes
    _plans_state = ((scope_provider, scope_spec, provider_scopes), {})
    _generation += 1


def register(provider: ClaimProvider) -> None:
    """Add a provider. Refused (ClaimsRegistryError) if a scope, a claim or its name is taken."""
    global _providers
    if not provider.name or not provider.scopes:
        raise ClaimsRegistryError("a claim provider needs a name and at least one scope")
    with _lock:
        if provider.name in _providers:
            raise ClaimsRegistryError(f"claim provider {provider.name!r} is already registered")
        seen_scopes: set[str] = set()
        seen_claims: set[str] = set()
        for spec in provider.scopes:
            if not spec.name or any(character.isspace() for character in spec.name):
                raise ClaimsRegistryError(f"malformed scope name {spec.name!r}")
            if spec.name in _scope_spec or spec.name in seen_scopes:
                owner = _scope_provider[spec.name].name if spec.name in _scope_provider else provider.name
                raise ClaimsRegistryError(f"scope {spec.name!r} is already provided by {owner!r}")
            seen_scopes.add(spec.name)
            for claim in spec.claims:
                if claim in _claim_scope or claim in seen_claims:
                    raise ClaimsRegistryError(f"claim {claim!r} is already released under another scope")
                seen_claims.add(claim)
        _providers = {**_providers, provider.name: provider}
        _rebuild()


def unregister(name: str) -> None:
    """Remove a provider by name (tests; a no-op if absent)."""
    global _providers
    with _lock:
        if name in _providers:
            _providers = {key: value for key, value in _providers.items() if key != name}
            _rebuild()


def generation() -> int:
    """Changes whenever the registry does: callers key their caches on it."""
    return _generation


def providers() -> tuple[ClaimProvider, ...]:
    return tuple(_providers.values())


def supported_scopes() -> tuple[str, ...]:
    """Every registered scope, in registration order (discovery, client registration)."""
    return tuple(_scope_spec)


def is_supported_scope(scope: str) -> bool:
    return scope in _scope_spec


def scope_spec(scope: str) -> ScopeSpec | None:
    return _scope_spec.get(scope)


def scope_claims(scope: str) -> tuple[str, ...]:
    spec = _scope_spec.get(scope)
    return spec.claims if spec is not None else ()


def claim_scope(claim: str) -> str | None:
    """The scope a claim is released under (a claim is only ever released under its scope)."""
    return _claim_scope.get(claim)


def supported_claims() -> tuple[str, ...]:
    """Every claim some scope releases (discovery's claims_supported adds the ID token's own)."""
    return tuple(_claim_scope)


def resident_user_fields() -> tuple[str, ...]:
    """The `User` fields the providers read: userinfo selects them with the token."""
    fields: dict[str, None] = {}
    for provider in _providers.values():
        fields.update(dict.fromkeys(provider.user_fields))
    return tuple(fields)


def describe_scopes(scopes: Iterable[str]) -> list[dict[str, object]]:
    """The consent screen's lines (templates/oidc/consent.html), unknown scopes left out."""
    described: list[dict[str, object]] = []
    for scope in scopes:
        spec = _scope_spec.get(scope)
        if spec is None:
            continue
        described.append(
            {
                "scope": scope,
                "what": spec.what,
                "why": spec.why,
                "claims": spec.claims,
                "claim_labels": [spec.claim_labels.get(claim, claim) for claim in spec.claims],
            }
        )
    return described


def data_categories(scopes: Iterable[str]) -> list[dict[str, str]]:
    """The ledger data categories of these scopes, in the given order (unknown: the scope's name)."""
    categories = []
    for scope in scopes:
        spec = _scope_spec.get(scope)
        category = spec.data_category if spec is not None else DataCategory(fr=scope, en=scope)
        categories.append({"code": scope, "kind": category.kind, "fr": category.fr, "en": category.en})
    return categories


def purposes_needed(scopes: Iterable[str]) -> dict[str, tuple[str, ...]]:
    """{purpose code: the scopes it gates} for the providers of these scopes that name one."""
    needed: dict[str, list[str]] = {}
    for scope in scopes:
        provider = _scope_provider.get(scope)
        if provider is not None and provider.purpose_code:
            needed.setdefault(provider.purpose_code, []).append(scope)
    return {code: tuple(gated) for code, gated in needed.items()}


def scope_purposes(scopes: frozenset[str]) -> Mapping[str, tuple[str, ...]]:
    """purposes_needed(scopes), read-only, worked out once per set of scopes (_scope_plan):
    the same codes and the same scopes for each, in the set's order (the release asks the
    ledger for these codes; the order of neither matters there)."""
    return MappingProxyType(_scope_plan(scopes).purposes)


def read_claims(user: Any, scopes: Iterable[str], *, client: Any = None) -> dict[str, Any]:
    """The claims of these scopes for this resident, from every provider concerned.

    Only claims that a granted scope covers are kept. The caller decides beforehand whether
    the ledger allows the release (identity.oidc.sharing.released_claims). `client`: the
    partner receiving them, for providers with a `client_read`.
    """
    claims: dict[str, Any] = {}
    # The providers concerned and the claims their granted scopes cover: worked out once per
    # set of scopes (_scope_plan).
    for provider, own, covered in _scope_plan(frozenset(scopes)).readers:
        read = (
            provider.read(user, own)
            if provider.client_read is None or client is None
            else provider.client_read(user, own, client)
        )
        for name, value in read.items():
            if name in covered:
                claims[name] = value
    return claims


class RegistryScopes:
    """django-oauth-toolkit's scopes backend (OAUTH2_PROVIDER["SCOPES_BACKEND_CLASS"]).

    Our views and validator decide scopes themselves (a client's registered scopes); this
    keeps any django-oauth-toolkit code path that asks its backend in step with the registry.
    """

    def get_all_scopes(self) -> dict[str, str]:
        return {name: str(spec.what) for name, spec in _scope_spec.items()}

    def get_available_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        return list(_scope_spec)

    def get_default_scopes(
        self, application: Any = None, request: Any = None, *args: Any, **kwargs: Any
    ) -> list[str]:
        return ["openid"]
