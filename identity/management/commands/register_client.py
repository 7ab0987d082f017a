from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from identity.oidc.constants import REGISTRABLE_GRANTS, SUPPORTED_SCOPES
from identity.services import ClientConfigError, client_register


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
                "subject. Required when redirect URIs are on several hosts. Not fetched."
            ),
        )
        parser.add_argument(
            "--signing-alg",
            default="RS256",
            help="RS256 (default) or ES256: how ID tokens and logout tokens are signed.",
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
            help=f"One of {', '.join(SUPPORTED_SCOPES)}; repeatable.",
        )
        parser.add_argument(
            "--resource-server", action="store_true", help="May call the introspection endpoint."
        )
        parser.add_argument(
            "--internal",
            action="store_true",
            help=(
                "An internal metropolitan service (no consent screen: public task; "
                "public subject identifier instead of a pairwise one)."
            ),
        )
        parser.add_argument("--json", action="store_true", help="Print the result as JSON.")

    def handle(self, *args: Any, **options: Any) -> None:
        try:
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
                is_resource_server=options["resource_server"],
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
