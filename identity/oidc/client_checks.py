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

from identity.oidc.client_uris import ClientConfigError, validate_client_uri

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
) -> dict[str, list[str]]:
    """Field name (the model's) -> messages; empty when the configuration is acceptable.

    Fields come in the order their first problem was found, so the first message of the
    first field is the first problem (what the service reports).
    """
    from identity.oidc.claims import supported_scopes
    from identity.oidc.constants import AUTH_METHODS, GRANT_AUTHORIZATION_CODE, REGISTRABLE_GRANTS

    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    def uri(field: str, value: str, what: str) -> None:
        try:
            validate_client_uri(value, what=what)
        except ClientConfigError as exc:
            add(field, str(exc))

    if not grant_types:
        choices = ", ".join(REGISTRABLE_GRANTS)
        add("grant_types", _("Choisissez au moins une autorisation parmi : %s.") % choices)
    for grant in grant_types:
        if grant not in REGISTRABLE_GRANTS:
            add(
                "grant_types",
                _("Autorisation inconnue : %(grant)s (choisissez parmi : %(choices)s).")
                % {"grant": repr(grant), "choices": ", ".join(REGISTRABLE_GRANTS)},
            )
    if public and "client_credentials" in grant_types:
        add("grant_types", _("Un client public ne peut pas utiliser l'autorisation client_credentials."))
    if not scopes:
        add("allowed_scopes", _("Choisissez au moins une portée parmi : %s.") % ", ".join(supported_scopes()))
    for scope in scopes:
        if scope not in supported_scopes():
            add(
                "allowed_scopes",
                _("Portée inconnue : %(scope)s (choisissez parmi : %(choices)s).")
                % {"scope": repr(scope), "choices": ", ".join(supported_scopes())},
            )
    for value in redirect_uris:
        uri("redirect_uris", value, "redirect URI")
    if GRANT_AUTHORIZATION_CODE in grant_types and not redirect_uris:
        add("redirect_uris", _("L'autorisation authorization_code demande au moins une URI de redirection."))
    for value in post_logout_redirect_uris:
        uri("post_logout_redirect_uris", value, "post-logout redirect URI")
    if backchannel_logout_uri:
        uri("backchannel_logout_uri", backchannel_logout_uri, "back-channel logout URI")
    if frontchannel_logout_uri:
        uri("frontchannel_logout_uri", frontchannel_logout_uri, "front-channel logout URI")
    if signing_alg not in SIGNING_ALGS:
        add(
            "algorithm",
            _("Algorithme de signature inconnu : %(alg)s (choisissez parmi : RS256, ES256).")
            % {"alg": repr(signing_alg)},
        )
    if sector_identifier_uri:
        uri("sector_identifier_uri", sector_identifier_uri, "sector identifier URI")
    elif not is_internal and "redirect_uris" not in errors:  # internal services get the public subject
        from identity.oidc.subjects import redirect_hosts

        hosts = redirect_hosts(redirect_uris)
        if len(hosts) > 1:
            add(
                "sector_identifier_uri",
                _(
                    "Des URI de redirection sur plusieurs hôtes (%s) demandent une URI d'identifiant de "
                    "secteur (les identifiants par paire sont calculés par secteur)."
                )
                % ", ".join(sorted(hosts)),
            )
    if auth_method not in AUTH_METHODS:
        add(
            "token_endpoint_auth_method",
            _("Méthode d'authentification inconnue : %(method)s (choisissez parmi : %(choices)s).")
            % {"method": repr(auth_method), "choices": ", ".join(AUTH_METHODS)},
        )
    elif public != (auth_method == "none"):
        add(
            "token_endpoint_auth_method",
            _("Les clients publics, et eux seuls, utilisent la méthode « none »."),
        )
    if auth_method == "private_key_jwt":
        if bool(jwks) == bool(jwks_uri):
            add("jwks", _("private_key_jwt demande les clés du client : soit un JWKS, soit une URI de JWKS."))
    elif jwks or jwks_uri:
        add("jwks", _("Un JWKS ou une URI de JWKS ne sert qu'à la méthode private_key_jwt."))
    if jwks_uri:
        uri("jwks_uri", jwks_uri, "JWKS URI")
    if logo_uri:
        uri("logo_uri", logo_uri, "logo URI")
    if policy_uri:
        uri("policy_uri", policy_uri, "privacy policy URI")
    if jwks:
        try:
            validate_jwks_document(jwks)
        except ValueError as exc:
            add("jwks", _("JWKS : %s") % exc)
    if resource_identifier:  # RFC 8707 (identity/oidc/resources.py)
        from identity.oidc.resources import ResourceIdentifierError, resource_identifier_check

        try:
            resource_identifier_check(resource_identifier)
        except ResourceIdentifierError as exc:
            add("resource_identifier", str(exc))
    return errors


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
