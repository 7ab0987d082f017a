from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from identity.oidc.claims import supported_scopes
from identity.oidc.client_uris import ClientConfigError, validate_client_uri, validate_redirect_uri
from identity.oidc.clients import client_register
from identity.oidc.constants import AUTH_METHODS, REGISTRABLE_GRANTS
from identity.oidc.sector import sector_document_check


class Command(BaseCommand):
    help = "Register a partner client; prints its client_id (and client_secret, shown only once)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--name", required=True)
        parser.add_argument("--redirect-uri", action="append", default=[], dest="redirect_uris")
        parser.add_argument(
            "--post-logout-redirect-uri", action="append", default=[], dest="post_logout_redirect_uris"
        )
        parser.add_argument(
            "--backchannel-logout-uri", default="", help="OpenID Back-Channel Logout endpoint of the partner."
        )
        parser.add_argument(
            "--backchannel-logout-session-required",
            action="store_true",
            help="The partner requires `sid` in logout tokens (always sent).",
        )
        parser.add_argument(
            "--frontchannel-logout-uri",
            default="",
            help="OpenID Front-Channel Logout page of the partner (loaded in an iframe at sign-out).",
        )
        parser.add_argument(
            "--frontchannel-logout-session-required",
            action="store_true",
            help="The partner requires iss and sid on its front-channel logout URI (always sent).",
        )
        parser.add_argument(
            "--sector",
            default="",
            dest="sector_identifier_uri",
            help=(
                "Sector identifier URI (https): partners sharing its host get the same pairwise "
                "subject. Required when redirect URIs are on several hosts. Fetched now: it must "
                "be a JSON array listing every --redirect-uri, or nothing is registered."
            ),
        )
        parser.add_argument(
            "--signing-alg",
            default="ES256",
            help="ES256 (default) or RS256: how ID tokens and logout tokens are signed.",
        )
        parser.add_argument("--public", action="store_true", help="A public client (no secret, PKCE only).")
        parser.add_argument(
            "--grant",
            action="append",
            default=[],
            dest="grants",
            help=f"One of {', '.join(REGISTRABLE_GRANTS)}; repeatable.",
        )
        parser.add_argument(
            "--scope",
            action="append",
            default=[],
            dest="scopes",
            help=f"One of {', '.join(supported_scopes())}; repeatable.",
        )
        parser.add_argument(
            "--resource-server", action="store_true", help="May call the introspection endpoint."
        )
        parser.add_argument(
            "--resource-identifier",
            default="",
            metavar="URI",
            help=(
                "RFC 8707 identifier of this resource server (absolute https URI, unique): clients "
                "ask resource=URI for tokens meant for it. Implies --resource-server."
            ),
        )
        parser.add_argument(
            "--internal",
            action="store_true",
            help=(
                "An internal metropolitan service (no consent screen: public task; "
                "public subject identifier instead of a pairwise one)."
            ),
        )
        parser.add_argument(
            "--auth-method",
            default=None,
            choices=AUTH_METHODS,
            help=(
                "How the client authenticates at the token endpoint (enforced strictly): "
                "client_secret_basic (default), client_secret_post, private_key_jwt, "
                "none (public clients)."
            ),
        )
        parser.add_argument(
            "--jwks-uri", default="", help="private_key_jwt: where the client publishes its keys."
        )
        parser.add_argument(
            "--jwks-file", default="", help="private_key_jwt: a file holding the client's public JWK Set."
        )
        parser.add_argument(
            "--require-par",
            action="store_true",
            help="Authorization requests must be pushed first (RFC 9126 PAR).",
        )
        parser.add_argument(
            "--require-mfa",
            action="store_true",
            help="Residents must sign in with a second factor (acr https://refeds.org/profile/mfa).",
        )
        parser.add_argument(
            "--require-dpop",
            action="store_true",
            help=(
                "Every token request must carry a DPoP proof (RFC 9449 dpop_bound_access_tokens): "
                "all the client's tokens are bound to its key."
            ),
        )
        parser.add_argument("--logo-uri", default="", help="Logo shown on the consent screen (https).")
        parser.add_argument(
            "--policy-uri", default="", help="The partner's privacy policy, linked from the consent screen."
        )
        parser.add_argument(
            "--allowed-origin",
            action="append",
            default=[],
            dest="allowed_origins",
            help=(
                "A web origin (https://host[:port]) whose pages may call the token, userinfo and "
                "revocation endpoints (CORS): a single-page app's; repeatable."
            ),
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        jwks = None
        if options["jwks_file"]:
            try:
                with open(options["jwks_file"], encoding="utf-8") as handle:
                    jwks = json.load(handle)
            except (OSError, ValueError) as exc:
                raise CommandError(f"cannot read the JWKS file: {exc}") from exc
        try:
            if options["sector_identifier_uri"]:
                self._check_sector_document(options)
            client, secret = client_register(
                name=options["name"],
                redirect_uris=options["redirect_uris"],
                grant_types=options["grants"],
                scopes=options["scopes"],
                public=options["public"],
                post_logout_redirect_uris=options["post_logout_redirect_uris"],
                backchannel_logout_uri=options["backchannel_logout_uri"],
                backchannel_logout_session_required=options["backchannel_logout_session_required"],
                frontchannel_logout_uri=options["frontchannel_logout_uri"],
                frontchannel_logout_session_required=options["frontchannel_logout_session_required"],
                sector_identifier_uri=options["sector_identifier_uri"],
                signing_alg=options["signing_alg"],
                is_internal=options["internal"],
                is_resource_server=options["resource_server"] or bool(options["resource_identifier"]),
                resource_identifier=options["resource_identifier"],
                token_endpoint_auth_method=options["auth_method"],
                jwks=jwks,
                jwks_uri=options["jwks_uri"],
                require_par=options["require_par"],
                require_mfa=options["require_mfa"],
                logo_uri=options["logo_uri"],
                policy_uri=options["policy_uri"],
                allowed_origins=options["allowed_origins"],
                require_dpop=options["require_dpop"],
            )
        except ClientConfigError as exc:
            raise CommandError(str(exc)) from exc
        result: dict[str, Any] = {
            "client_id": client.client_id,
            "client_type": client.client_type,
            "grant_types": client.grant_type_list,
            "scopes": client.scope_list,
            "redirect_uris": client.redirect_uris.split(),
            "subject_type": "public" if client.is_internal else "pairwise",
            "sector": client.subject_sector,
            "id_token_signed_response_alg": client.algorithm,
            "token_endpoint_auth_method": client.token_endpoint_auth_method,
            "require_pushed_authorization_requests": client.require_par,
            "require_mfa": client.require_mfa,
            "allowed_origins": client.allowed_origins.split(),
            "dpop_bound_access_tokens": client.dpop_bound_access_tokens,
        }
        if secret:
            result["client_secret"] = secret
        if options["json"]:
            self.stdout.write(json.dumps(result))
            return
        self.stdout.write(f"client_id: {client.client_id}")
        if secret:
            self.stdout.write(f"client_secret: {secret}")
            self.stdout.write("The secret is shown only now; it is stored hashed and cannot be recovered.")

    @staticmethod
    def _check_sector_document(options: dict[str, Any]) -> None:
        """OIDC Core §8.1: the sector identifier document lists every redirect URI.

        The URIs are checked first (a malformed one gets its own message), then the
        document is fetched, before anything is written.
        """

        validate_client_uri(options["sector_identifier_uri"], what="sector identifier URI")
        for uri in options["redirect_uris"]:
            validate_redirect_uri(uri, what="redirect URI")
        sector_document_check(
            sector_identifier_uri=options["sector_identifier_uri"], redirect_uris=options["redirect_uris"]
        )
