from __future__ import annotations

import json
import os
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import transaction
from oauth2_provider.models import get_application_model

from common.crypto import generate_secret, keyed_hash
from identity.demo import DEMO_CLIENT_NAME, DEMO_EMAIL, DEMO_PASSWORD, DEMO_SCOPES, demo_client_file
from identity.models import User
from identity.oidc.clients import client_register
from identity.services import user_create


class Command(BaseCommand):
    help = "Load the demo resident and the demo partner client used by /demo/ (development only). Idempotent."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--sip2-port",
            type=int,
            help="also give the demo partner a library connector for the SIP2 simulator on this port",
        )
        parser.add_argument(
            "--transport-port",
            type=int,
            help="also give the demo partner a transport connector for the Naolib simulator on this port",
        )
        parser.add_argument(
            "--ticketing-port",
            type=int,
            help="also give the demo partner a ticketing connector for the ticketing simulator on this port",
        )
        parser.add_argument(
            "--scim-port",
            type=int,
            help="also give the demo partner a SCIM connector for the SCIM simulator on this port",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if settings.PRODUCTION:
            raise CommandError("demo data is never loaded in production")
        with transaction.atomic():
            if not User.objects.filter(email=DEMO_EMAIL).exists():
                user_create(
                    email=DEMO_EMAIL,
                    password=DEMO_PASSWORD,
                    given_name="Camille",
                    family_name="Martin",
                    email_verified=True,
                )
            client = get_application_model().objects.filter(name=DEMO_CLIENT_NAME).first()
            redirect_uri = settings.ISSUER + "/demo/callback"
            path = demo_client_file()
            if client is None:
                client, secret = client_register(
                    name=DEMO_CLIENT_NAME,
                    redirect_uris=[redirect_uri],
                    grant_types=["authorization_code"],
                    scopes=DEMO_SCOPES,
                    post_logout_redirect_uris=[settings.ISSUER + "/demo/"],
                )
            elif not path.exists() or client.redirect_uris != redirect_uri:
                secret = generate_secret()
                client.client_secret = keyed_hash(secret)
                client.redirect_uris = redirect_uri
                client.post_logout_redirect_uris = settings.ISSUER + "/demo/"
                client.save(update_fields=["client_secret", "redirect_uris", "post_logout_redirect_uris"])
            else:
                secret = None
            # A demo client loaded before the portal page existed gains the profiles scopes.
            if client.allowed_scopes.split() != DEMO_SCOPES:
                client.allowed_scopes = " ".join(DEMO_SCOPES)
                client.save(update_fields=["allowed_scopes"])
            # The demo partner page embeds the cookie-consent widget from our own origin.
            if settings.ISSUER not in client.allowed_origins.split():
                client.allowed_origins = " ".join([*client.allowed_origins.split(), settings.ISSUER])
                client.save(update_fields=["allowed_origins"])
            if secret:
                settings.VAR_DIR.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
                with os.fdopen(fd, "w") as handle:
                    json.dump({"client_id": client.client_id, "client_secret": secret}, handle)
        self.stdout.write(self.style.SUCCESS("Demo ready."))
        self.stdout.write(f"  Try the sign-in flow: {settings.ISSUER}/demo/")
        self.stdout.write(f"  Then the territorial portal's page: {settings.ISSUER}/demo/portail/")
        self.stdout.write(f"  Demo resident: {DEMO_EMAIL} / password: {DEMO_PASSWORD}")
        if options.get("sip2_port"):
            # By name, not by import: identity sits below connectors (docs/architecture.md).
            call_command("load_demo_library", port=options["sip2_port"], stdout=self.stdout)
        if options.get("transport_port"):
            call_command("load_demo_transport", port=options["transport_port"], stdout=self.stdout)
        if options.get("ticketing_port"):
            call_command("load_demo_ticketing", port=options["ticketing_port"], stdout=self.stdout)
        if options.get("scim_port"):
            call_command("load_demo_scim", port=options["scim_port"], stdout=self.stdout)
