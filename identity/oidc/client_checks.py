"""The one set of rules a partner client's configuration must follow.

Used by the three places a client is written: the service (identity.oidc.clients.client_register,
behind the `register_client` command and the demo data), the staff pages
(identity.oidc.admin.PartnerClientForm, through `Client.clean`) and `Client.clean` itself.
`client_config_errors` returns every problem, field by field, in the language active when it
is called (French for staff; the service evaluates it in English for operators).

Not here: the sector identifier document fetch (identity/oidc/sector.py, network, called by
the service and the form as before) and the uniqueness of a resource identifier (database,
checked by the service and by the model's unique constraint).
"""

from __future__ import annotations

from typing import Any

from django.utils.translation import gettext as _
from jwcrypto import jwk
from jwcrypto.common import JWException

from consent.api.cors import normalise_origin
from identity.oidc.claims import supported_scopes
from identity.oidc.client_uris import ClientConfigError, validate_client_uri, validate_redirect_uri
from identity.oidc.constants import AUTH_METHODS, GRANT_AUTHORIZATION_CODE, REGISTRABLE_GRANTS
from identity.oidc.resources import ResourceIdentifierError, resource_identifier_check
from identity.oidc.subjects import redirect_hosts

SIGNING_ALGS = ("RS256", "ES256")


def client_config_errors(
    *,
    redirect_uris: list[str],
    post_logout_redirect_uris: list[str],
    grant_types: list[str],
    scopes: list[str],
    public: bool,
    auth_method: str,
    signing_alg: str,
    is_internal: bool = False,
    backchannel_logout_uri: str = "",
    frontchannel_logout_uri: str = "",
    sector_identifier_uri: str = "",
    jwks: dict[str, Any] | None = None,
    jwks_uri: str = "",
    logo_uri: str = "",
    policy_uri: str = "",
    resource_identifier: str = "",
    allowed_origins: list[str] | None = None,
) -> dict[str, list[str]]:
    """Field name (the model's) -> messages; empty when the configuration is acceptable.

    Fields come in the order their first problem was found, so the first message of the
    first field is the first problem (what the service reports). The checks below run in
    that order, one concern each.
    """
    errors: dict[str, list[str]] = {}

    def add(problems: list[tuple[str, str]]) -> None:
        for field, message in problems:
            errors.setdefault(field, []).append(message)

    add(_grant_problems(grant_types, public=public))
    add(_scope_problems(scopes))
    add(_redirect_uri_problems(redirect_uris, grant_types=grant_types))
    add(_logout_uri_problems(post_logout_redirect_uris, backchannel_logout_uri, frontchannel_logout_uri))
    add(_signing_alg_problems(signing_alg))
    add(
        _sector_problems(
            sector_identifier_uri,
            redirect_uris=redirect_uris,
            # Hosts are only counted among valid redirect URIs; internal services get the
            # public subject.
            needs_sector=not is_internal and "redirect_uris" not in errors,
        )
    )
    add(_auth_method_problems(auth_method, public=public, jwks=jwks, jwks_uri=jwks_uri))
    add(_optional_uri_problems("jwks_uri", jwks_uri, "JWKS URI"))
    add(_optional_uri_problems("logo_uri", logo_uri, "logo URI"))
    add(_optional_uri_problems("policy_uri", policy_uri, "privacy policy URI"))
    add(_jwks_problems(jwks))
    add(_resource_problems(resource_identifier))
    add(_origin_problems(allowed_origins or []))
    return errors


# Each check returns its problems as (field, message), in the order found.


def _optional_uri_problems(field: str, value: str, what: str) -> list[tuple[str, str]]:
    """An optional URI: empty, nothing to check."""
    return _uri_problems(field, value, what) if value else []


def _uri_problems(field: str, value: str, what: str) -> list[tuple[str, str]]:
    """A URI against the rules of client_uris."""
    try:
        validate_client_uri(value, what=what)
    except ClientConfigError as exc:
        return [(field, str(exc))]
    return []


def _grant_problems(grant_types: list[str], *, public: bool) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not grant_types:
        choices = ", ".join(REGISTRABLE_GRANTS)
        problems.append(("grant_types", _("Choisissez au moins une autorisation parmi : %s.") % choices))
    for grant in grant_types:
        if grant not in REGISTRABLE_GRANTS:
            problems.append(
                (
                    "grant_types",
                    _("Autorisation inconnue : %(grant)s (choisissez parmi : %(choices)s).")
                    % {"grant": repr(grant), "choices": ", ".join(REGISTRABLE_GRANTS)},
                )
            )
    if public and "client_credentials" in grant_types:
        problems.append(
            ("grant_types", _("Un client public ne peut pas utiliser l'autorisation client_credentials."))
        )
    return problems


def _scope_problems(scopes: list[str]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if not scopes:
        problems.append(
            (
                "allowed_scopes",
                _("Choisissez au moins une portée parmi : %s.") % ", ".join(supported_scopes()),
            )
        )
    for scope in scopes:
        if scope not in supported_scopes():
            problems.append(
                (
                    "allowed_scopes",
                    _("Portée inconnue : %(scope)s (choisissez parmi : %(choices)s).")
                    % {"scope": repr(scope), "choices": ", ".join(supported_scopes())},
                )
            )
    return problems


def _redirect_uri_problems(redirect_uris: list[str], *, grant_types: list[str]) -> list[tuple[str, str]]:
    """Web redirect URIs, and native apps' (RFC 8252: private-use schemes, loopback IPs)."""
    problems: list[tuple[str, str]] = []
    for value in redirect_uris:
        try:
            validate_redirect_uri(value, what="redirect URI")
        except ClientConfigError as exc:
            problems.append(("redirect_uris", str(exc)))
    if GRANT_AUTHORIZATION_CODE in grant_types and not redirect_uris:
        problems.append(
            ("redirect_uris", _("L'autorisation authorization_code demande au moins une URI de redirection."))
        )
    return problems


def _origin_problems(allowed_origins: list[str]) -> list[tuple[str, str]]:
    """Web origins allowed to call the protocol endpoints from a page (CORS, identity.oidc.cors):
    each exactly `https://host[:port]`, lower case, no path (http on loopback in development)."""
    problems: list[tuple[str, str]] = []
    for value in allowed_origins:
        if normalise_origin(value) != value:
            message = f"allowed origin {value!r} must be an origin: scheme://host[:port] in lower case"
            problems.append(("allowed_origins", message))
            continue
        try:
            validate_client_uri(value, what="allowed origin")
        except ClientConfigError as exc:
            problems.append(("allowed_origins", str(exc)))
    return problems


def _logout_uri_problems(
    post_logout_redirect_uris: list[str], backchannel_logout_uri: str, frontchannel_logout_uri: str
) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for value in post_logout_redirect_uris:
        problems += _uri_problems("post_logout_redirect_uris", value, "post-logout redirect URI")
    problems += _optional_uri_problems(
        "backchannel_logout_uri", backchannel_logout_uri, "back-channel logout URI"
    )
    problems += _optional_uri_problems(
        "frontchannel_logout_uri", frontchannel_logout_uri, "front-channel logout URI"
    )
    return problems


def _signing_alg_problems(signing_alg: str) -> list[tuple[str, str]]:
    if signing_alg in SIGNING_ALGS:
        return []
    return [
        (
            "algorithm",
            _("Algorithme de signature inconnu : %(alg)s (choisissez parmi : RS256, ES256).")
            % {"alg": repr(signing_alg)},
        )
    ]


def _sector_problems(
    sector_identifier_uri: str, *, redirect_uris: list[str], needs_sector: bool
) -> list[tuple[str, str]]:
    """The sector identifier URI given, or required by redirect URIs on several hosts."""
    if sector_identifier_uri:
        return _uri_problems("sector_identifier_uri", sector_identifier_uri, "sector identifier URI")
    if not needs_sector:
        return []

    hosts = redirect_hosts(redirect_uris)
    if len(hosts) <= 1:
        return []
    return [
        (
            "sector_identifier_uri",
            _(
                "Des URI de redirection sur plusieurs hôtes (%s) demandent une URI d'identifiant de "
                "secteur (les identifiants par paire sont calculés par secteur)."
            )
            % ", ".join(sorted(hosts)),
        )
    ]


def _auth_method_problems(
    auth_method: str, *, public: bool, jwks: dict[str, Any] | None, jwks_uri: str
) -> list[tuple[str, str]]:
    """The token endpoint authentication method, and the client keys it needs (or not)."""

    problems: list[tuple[str, str]] = []
    if auth_method not in AUTH_METHODS:
        problems.append(
            (
                "token_endpoint_auth_method",
                _("Méthode d'authentification inconnue : %(method)s (choisissez parmi : %(choices)s).")
                % {"method": repr(auth_method), "choices": ", ".join(AUTH_METHODS)},
            )
        )
    elif public != (auth_method == "none"):
        problems.append(
            (
                "token_endpoint_auth_method",
                _("Les clients publics, et eux seuls, utilisent la méthode « none »."),
            )
        )
    if auth_method == "private_key_jwt":
        if bool(jwks) == bool(jwks_uri):
            problems.append(
                (
                    "jwks",
                    _("private_key_jwt demande les clés du client : soit un JWKS, soit une URI de JWKS."),
                )
            )
    elif jwks or jwks_uri:
        problems.append(("jwks", _("Un JWKS ou une URI de JWKS ne sert qu'à la méthode private_key_jwt.")))
    return problems


def _jwks_problems(jwks: dict[str, Any] | None) -> list[tuple[str, str]]:
    """The client's JWKS document, when given."""
    if not jwks:
        return []
    try:
        validate_jwks_document(jwks)
    except ValueError as exc:
        return [("jwks", _("JWKS : %s") % exc)]
    return []


def _resource_problems(resource_identifier: str) -> list[tuple[str, str]]:
    """The RFC 8707 resource identifier (identity/oidc/resources.py), when given."""
    if not resource_identifier:
        return []

    try:
        resource_identifier_check(resource_identifier)
    except ResourceIdentifierError as exc:
        return [("resource_identifier", str(exc))]
    return []


def client_config_check(**config: Any) -> None:
    """Raise ClientConfigError (with its field) for the first problem of `client_config_errors`."""
    errors = client_config_errors(**config)
    if errors:
        field, messages = next(iter(errors.items()))
        raise ClientConfigError(messages[0], field=field)


def validate_jwks_document(data: Any) -> dict[str, Any]:
    """Registration-time check of an inline JWKS: public RSA/EC P-256 signing keys only."""
    if not isinstance(data, dict) or not isinstance(data.get("keys"), list) or not data["keys"]:
        raise ValueError("a JWK Set needs a non-empty 'keys' list")
    for entry in data["keys"]:
        if not isinstance(entry, dict):
            raise ValueError("each key must be a JSON object")
        if "d" in entry or "p" in entry or "k" in entry:
            raise ValueError("the JWKS must contain public keys only")
        if entry.get("kty") not in {"RSA", "EC"}:
            raise ValueError("keys must be RSA or EC (P-256)")
        if entry.get("kty") == "EC" and entry.get("crv") != "P-256":
            raise ValueError("EC keys must use the P-256 curve (ES256)")
        if entry.get("use", "sig") != "sig":
            raise ValueError("keys must be signing keys (use=sig)")
        try:
            jwk.JWK(**entry)
        except (JWException, ValueError, TypeError) as exc:
            raise ValueError(f"invalid key: {exc}") from exc
    return data
