"""Mon compte › Copie de mes données in a real browser, scanned with axe-core.

A resident signs in, asks for a copy of their data with a click, sees it waiting, lets the
worker build it (the real outbox handler), opens the emailed link, downloads the archive
once and finds the link spent. Every state of the pages (nothing asked, waiting, ready,
failed, the download page, the spent link) has no WCAG 2.1 A/AA violation, in French and
English, at 1280 px and 360 px (no horizontal scrolling there).
"""

from __future__ import annotations

import io
import re
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core import mail

from connectors.outbox import relay_once
from consent.models import RightsRequest, RightsRequestState
from consent.rights_requests import KIND_EXPORT
from tests.browser.conftest import WIDTHS, sign_in
from tests.browser.conftest import check_page as check
from tests.conftest import deliver_emails

pytestmark = pytest.mark.django_db(transaction=True)

LINK = re.compile(r"/compte/export/telecharger/[^/\s]+/")
TITLES = {
    "export": {"fr": "Copie de mes données", "en": "Copy of my data"},
    "download": {"fr": "Télécharger la copie de mes données", "en": "Download the copy of my data"},
}


@pytest.mark.parametrize("language", ["fr", "en"])
def test_asking_and_downloading_with_clicks_pass_axe(
    live_server: Any, chromium: Any, resident: Any, language: str, tmp_path: Path
) -> None:
    context = chromium.new_context(
        locale="fr-FR" if language == "fr" else "en-GB",
        viewport={"width": WIDTHS[0], "height": 800},
        accept_downloads=True,
    )
    try:
        context.add_cookies([{"name": "language", "value": language, "url": live_server.url}])
        page = context.new_page()
        sign_in(page, live_server.url, resident.email)
        page.goto(live_server.url + "/compte/")
        page.get_by_role(
            "link",
            name={"fr": "Recevoir une copie de toutes mes données", "en": "Get a copy of all my data"}[
                language
            ],
        ).click()
        page.wait_for_url("**/compte/export/")
        assert page.get_by_role("heading", level=1).inner_text() == TITLES["export"][language]
        check(page, language, "nothing asked")

        ask = {"fr": "Demander une copie de mes données", "en": "Ask for a copy of my data"}[language]
        page.get_by_role("button", name=ask).click()
        page.wait_for_load_state()
        assert RightsRequest.objects.get(user=resident).state == RightsRequestState.WAITING
        check(page, language, "waiting")

        mail.outbox.clear()
        assert relay_once(kinds=[KIND_EXPORT]).delivered == 1
        deliver_emails()
        page.reload()
        check(page, language, "ready")

        match = LINK.search(mail.outbox[-1].body)
        assert match is not None
        page.goto(live_server.url + match.group(0))
        assert page.get_by_role("heading", level=1).inner_text() == TITLES["download"][language]
        check(page, language, "download")
        button = {"fr": "Télécharger (fichier ZIP)", "en": "Download (ZIP file)"}[language]
        with page.expect_download() as download_info:
            page.get_by_role("button", name=button).click()
        saved = tmp_path / "export.zip"
        download_info.value.save_as(saved)
        with zipfile.ZipFile(io.BytesIO(saved.read_bytes())) as archive:
            assert set(archive.namelist()) == {"export.json", "export.html"}

        page.goto(live_server.url + match.group(0))  # spent
        check(page, language, "spent link")

        RightsRequest.objects.filter(user=resident).update(state=RightsRequestState.FAILED)
        page.goto(live_server.url + "/compte/export/")
        check(page, language, "failed")
    finally:
        context.close()
