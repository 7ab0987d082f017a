"""A resident's whole journey through the privacy centre, in one real browser session.

Register → verify the email → sign in through a partner (the /demo/ relying party, over
HTTP) → consent → the partner receives the claims; change the name and see the partner's
userinfo change; withdraw the partner's access and see the consent asked again; ask an export
and open the archive; ask the deletion, cancel, ask again, let the grace period end (time
moved) and see the account gone, the status page done and the ledger still verifying.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from datetime import timedelta
from typing import Any

import pytest
from django.core import mail
from django.core.management import call_command
from django.utils import timezone

from connectors.models import OutboxMessage
from connectors.outbox import relay_once
from consent.erasure import KIND_ERASURE, KIND_PARTNER_ERASURE
from consent.models import RightsRequest, RightsRequestState
from consent.rights_requests import KIND_EXPORT
from consent.selectors import ledger_verify
from identity.models import User
from tests.browser.conftest import axe_violations
from tests.conftest import PASSWORD, deliver_emails

pytestmark = pytest.mark.django_db(transaction=True)

EMAIL = "dominique.journey@example.org"
VERIFY_LINK = re.compile(r"/inscription/verifier/[^/\s]+/")
EXPORT_LINK = re.compile(r"/compte/export/telecharger/[^/\s]+/")
CANCEL_LINK = re.compile(r"/compte/suppression/annuler/[^/\s]+/")
STATUS_LINK = re.compile(r"/compte/suppression/etat/[^/\s]+/")


@pytest.fixture
def demo_server(live_server: Any, settings: Any, tmp_path: Any) -> str:
    settings.ISSUER = live_server.url
    settings.VAR_DIR = tmp_path
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": live_server.url}
    call_command("ensure_signing_keys")
    call_command("load_demo")
    return live_server.url


def last_link(pattern: re.Pattern[str]) -> str:
    deliver_emails()
    body = next(message.body for message in reversed(mail.outbox) if pattern.search(message.body))
    match = pattern.search(body)
    assert match is not None
    return match.group(0)


def partner_userinfo(page: Any, base: str) -> dict[str, Any] | None:
    """Go through the partner's sign-in again; its userinfo answer, or None at a consent screen."""
    page.goto(base + "/demo/start")
    page.wait_for_selector("#userinfo, form.decision")
    if page.locator("form.decision").count():
        return None
    return json.loads(page.locator("#userinfo").inner_text())


def test_the_privacy_centre_journey(demo_server: str, chromium: Any, tmp_path: Any) -> None:
    base = demo_server
    context = chromium.new_context(
        locale="fr-FR", viewport={"width": 360, "height": 800}, accept_downloads=True
    )
    page = context.new_page()
    try:
        # Register and verify the address.
        page.goto(base + "/inscription/")
        page.get_by_label("Adresse e-mail").fill(EMAIL)
        page.get_by_label("Prénom").fill("Dominique")
        page.get_by_label("Nom", exact=True).fill("Loire")
        page.get_by_label("Mot de passe").fill(PASSWORD)
        page.get_by_role("button", name="Créer mon compte").click()
        page.wait_for_load_state()
        page.goto(base + last_link(VERIFY_LINK))
        page.wait_for_load_state()
        assert User.objects.get(email=EMAIL).email_verified

        # Sign in through the partner and allow it: it receives the claims.
        page.goto(base + "/demo/start")
        if page.locator("input[name=password]").count():
            page.get_by_label("Adresse e-mail").fill(EMAIL)
            page.get_by_label("Mot de passe").fill(PASSWORD)
            page.get_by_role("button", name="Se connecter").click()
        page.wait_for_selector("form.decision")
        page.get_by_role("button", name="Autoriser").click()
        page.wait_for_selector("#userinfo")
        assert json.loads(page.locator("#userinfo").inner_text())["given_name"] == "Dominique"

        # A change in Mon compte reaches the partner at its next userinfo call.
        page.goto(base + "/compte/informations/modifier/")
        page.get_by_label("Prénom").fill("Camille-Dominique")
        page.get_by_role("button", name="Enregistrer").click()
        page.wait_for_url("**/compte/informations/")
        userinfo = partner_userinfo(page, base)
        assert userinfo is not None and userinfo["given_name"] == "Camille-Dominique"

        # Withdraw the partner's access: its next sign-in asks for consent again.
        page.goto(base + "/compte/services/")
        assert axe_violations(page) == []
        page.get_by_role("button", name=re.compile("Retirer l'accès")).first.click()
        page.wait_for_load_state()
        assert partner_userinfo(page, base) is None  # the consent screen again

        # Ask an export; the worker builds it; open the archive.
        page.goto(base + "/compte/export/")
        page.get_by_role("button", name="Demander une copie de mes données").click()
        page.wait_for_load_state()
        assert relay_once(kinds=[KIND_EXPORT]).delivered == 1
        page.goto(base + last_link(EXPORT_LINK))
        with page.expect_download() as download:
            page.get_by_role("button", name="Télécharger (fichier ZIP)").click()
        saved = tmp_path / "export.zip"
        download.value.save_as(saved)
        with zipfile.ZipFile(io.BytesIO(saved.read_bytes())) as archive:
            document = json.loads(archive.read("export.json"))
        assert EMAIL in json.dumps(document) and "Camille-Dominique" in json.dumps(document)

        # Ask the deletion, cancel it, ask again, let the grace period end.
        page.goto(base + "/compte/supprimer/")
        page.get_by_role("button", name="Demander la suppression de mon compte").click()
        page.wait_for_load_state()
        page.goto(base + last_link(CANCEL_LINK))
        page.get_by_role("button", name=re.compile("Annuler la suppression")).click()
        page.wait_for_load_state()
        assert RightsRequest.objects.get(kind="erasure").state == RightsRequestState.CANCELLED
        page.goto(base + "/compte/supprimer/")
        page.get_by_role("button", name="Demander la suppression de mon compte").click()
        page.wait_for_load_state()
        status = last_link(STATUS_LINK)
        past = timezone.now() - timedelta(seconds=1)
        RightsRequest.objects.filter(state=RightsRequestState.WAITING).update(not_before=past)
        OutboxMessage.objects.filter(kind=KIND_ERASURE, status="pending").update(next_attempt_at=past)
        while relay_once(kinds=[KIND_ERASURE, KIND_PARTNER_ERASURE]).processed:
            pass
        assert not User.objects.filter(email=EMAIL).exists()
        page.goto(base + status)
        assert axe_violations(page) == []
        erased = RightsRequest.objects.filter(kind="erasure", state=RightsRequestState.DONE)
        assert erased.count() == 1 and erased.get().user_id is None
        assert ledger_verify().ok  # the proof of past consents still verifies, unreadable
    finally:
        context.close()
