"""Internal metropolitan services: no consent screen (public task), and the resident is told.

Issue 4: "Operator-marked internal services may be exempt [from the consent screen]
(public task), and the resident is told." GDPR Art. 6(1)(e) is the legal basis, so no
consent is asked and nothing is written to the consent ledger; Art. 13 asks that the
resident be informed of the recipients, the data and the legal basis. So:

- the first time a resident is sent to an internal service, and again when it asks for
  scopes beyond those already noticed, an information page names the service, what it
  receives, the legal basis (public task, Art. 6(1)(e)) and why no consent is asked, links
  to the privacy policy, and has one "Continuer" button (a CSRF-protected POST) that
  resumes the authorization;
- pressing it is recorded as information given, never as a consent;
- `prompt=none` still answers silently (documented choice: the page is not a consent, the
  processing does not depend on it); nothing is recorded, so the page comes at the next
  interactive request; `prompt=consent` shows it again.
"""

from __future__ import annotations

import re
import time
from html.parser import HTMLParser
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client as BrowserClient
from django.test.utils import CaptureQueriesContext

from consent.selectors import events_search
from consent.services import consent_record
from identity.oidc.internal_notice import internal_notice_covers, internal_notice_record
from identity.oidc.models import InternalServiceNotice
from identity.oidc.sharing import sharing_purpose_code
from tests.conftest import REDIRECT_URI, OIDCFlow
from tests.oidc.conftest import is_consent_page, location_base, location_query, sign_in, userinfo

pytestmark = pytest.mark.django_db

POLICY = "https://demarches.example.fr/confidentialite"


@pytest.fixture
def internal(make_client: Any) -> Any:
    return make_client(
        name="Espace démarches",
        is_internal=True,
        scopes=["openid", "profile", "email", "phone"],
        policy_uri=POLICY,
    )


@pytest.fixture
def flow(signed_in: BrowserClient, internal: Any) -> OIDCFlow:
    return OIDCFlow(signed_in, internal)


def is_notice_page(response: Any) -> bool:
    return response.status_code == 200 and "notice_id" in (response.context or {})


class _Page(HTMLParser):
    """The structure of a page: headings, forms and their controls, links, lang."""

    def __init__(self) -> None:
        super().__init__()
        self.lang = ""
        self.headings: list[str] = []
        self.forms: list[dict[str, Any]] = []
        self.links: list[str] = []
        self._heading: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self.lang = values.get("lang") or ""
        elif tag in {"h1", "h2", "h3"}:
            self._heading = tag
            self.headings.append(tag + ":")
        elif tag == "form":
            self.forms.append(
                {"method": values.get("method"), "action": values.get("action"), "controls": []}
            )
        elif tag in {"input", "button"} and self.forms:
            self.forms[-1]["controls"].append((tag, values.get("type"), values.get("name")))
        elif tag == "a" and values.get("href"):
            self.links.append(values["href"] or "")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._heading:
            self._heading = None

    def handle_data(self, data: str) -> None:
        if self._heading:
            self.headings[-1] += data


def parse(response: Any) -> _Page:
    page = _Page()
    page.feed(response.content.decode())
    return page


def continue_with_csrf(browser: BrowserClient, page: Any) -> Any:
    """Press "Continuer" as a browser would: the form's fields, CSRF checks enforced."""
    html = page.content.decode()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)
    browser.handler.enforce_csrf_checks = True
    try:
        return browser.post(
            "/authorize/information", {"csrfmiddlewaretoken": token, "pending": page.context["notice_id"]}
        )
    finally:
        browser.handler.enforce_csrf_checks = False


# --- the page -----------------------------------------------------------------------------------


def test_first_visit_shows_the_information_page_not_a_consent_screen(flow, internal):
    page = flow.authorize()
    assert is_notice_page(page) and not is_consent_page(page)
    assert "oidc/internal_notice.html" in [template.name for template in page.templates]
    html = page.content.decode()
    assert internal.client.name in html
    # What it receives, in plain words (the claims of the requested scopes).
    for words in ("Vos nom et prénom", "Votre adresse e-mail", "prénom", "adresse e-mail"):
        assert words in html
    assert "téléphone" not in html  # phone is allowed for the client but not requested
    # The legal basis and why no consent is asked.
    assert "article 6, paragraphe 1, point e" in html
    assert "mission d'intérêt public" in html
    assert "consentement n'est donc pas demandé" in html
    structure = parse(page)
    assert settings.CONSENT_POLICY_URL in structure.links and POLICY in structure.links
    # One form: POST, CSRF token, one button, "Continuer".
    assert len(structure.forms) == 2  # the language switcher, then ours
    form = structure.forms[1]
    assert form["method"] == "post" and form["action"] == "/authorize/information"
    assert ("input", "hidden", "csrfmiddlewaretoken") in form["controls"]
    assert [control for control in form["controls"] if control[0] == "button"] == [("button", "submit", None)]
    assert ">Continuer</button>" in html
    assert 'value="deny"' not in html and "Refuser" not in html
    # Nothing recorded by merely showing the page, and never a ledger event.
    assert not InternalServiceNotice.objects.exists()
    assert not events_search().exists()


def test_page_structure_is_accessible(flow):
    structure = parse(flow.authorize())
    assert structure.lang == "fr"
    levels = [heading.split(":")[0] for heading in structure.headings]
    assert levels.count("h1") == 1 and levels[0] == "h1"
    assert all(level in {"h1", "h2"} for level in levels)  # no skipped level
    assert all(heading.split(":", 1)[1].strip() for heading in structure.headings)


def test_page_in_english(signed_in, internal):
    signed_in.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    page = OIDCFlow(signed_in, internal).authorize()
    assert is_notice_page(page)
    html = page.content.decode()
    assert parse(page).lang == "en"
    assert "Why you are not asked to agree" in html
    assert "Article 6(1)(e)" in html
    assert ">Continue</button>" in html
    assert "Continuer" not in html


def test_ui_locales_english_is_honoured(flow):
    page = flow.authorize(ui_locales="en-GB")
    assert is_notice_page(page)
    assert "What this service receives from your account" in page.content.decode()


# --- "Continuer" --------------------------------------------------------------------------------


def test_continue_issues_the_code_and_records_the_notice_not_a_consent(flow, internal, resident):
    page = flow.authorize()
    response = continue_with_csrf(flow.browser, page)
    assert response.status_code == 303
    assert location_base(response) == REDIRECT_URI
    query = location_query(response)
    assert query["state"] == [flow.state] and query["iss"] == [settings.ISSUER]
    tokens = flow.token(flow.code_from(response)).json()
    assert userinfo(tokens["access_token"]).json()["email"] == resident.email

    notice = InternalServiceNotice.objects.get()
    assert (notice.user, notice.client) == (resident, internal.client)
    assert notice.scope_set == {"openid", "profile", "email"}
    assert not events_search(user=resident).exists()  # not a consent: the ledger is untouched


def test_the_page_is_shown_once(flow, resident):
    flow.get_code()
    response = OIDCFlow(flow.browser, flow.rp).authorize()
    assert response.status_code in (302, 303) and "code" in location_query(response)
    fewer = OIDCFlow(flow.browser, flow.rp).authorize(scope="openid email")
    assert "code" in location_query(fewer)


def test_more_scopes_than_noticed_show_it_again(flow):
    flow.get_code(scope="openid email")
    page = OIDCFlow(flow.browser, flow.rp).authorize(scope="openid email phone")
    assert is_notice_page(page)
    assert "Votre numéro de téléphone" in page.content.decode()
    continue_with_csrf(flow.browser, page)
    assert InternalServiceNotice.objects.get().scope_set == {"openid", "email", "phone"}
    # Union of what was noticed: neither set asks again.
    for scope in ("openid email phone", "openid phone", "openid email"):
        assert "code" in location_query(OIDCFlow(flow.browser, flow.rp).authorize(scope=scope))
    assert is_notice_page(OIDCFlow(flow.browser, flow.rp).authorize(scope="openid profile"))


def test_each_internal_service_has_its_own_notice(flow, make_client):
    flow.get_code()
    other = make_client(name="Inscriptions scolaires", is_internal=True)
    assert is_notice_page(OIDCFlow(flow.browser, other).authorize())


def test_each_resident_has_their_own_notice(flow, make_resident):
    flow.get_code()
    other = make_resident("dominique@example.org")
    browser = BrowserClient()
    sign_in(browser, other.email)
    assert is_notice_page(OIDCFlow(browser, flow.rp).authorize())


def test_partner_services_still_get_the_consent_screen(signed_in, rp):
    page = OIDCFlow(signed_in, rp).authorize()
    assert is_consent_page(page) and not is_notice_page(page)


# --- prompt -------------------------------------------------------------------------------------


def test_prompt_none_answers_silently_and_records_nothing(flow, resident):
    response = flow.authorize(prompt="none")
    assert response.status_code in (302, 303)
    query = location_query(response)
    assert "code" in query and "error" not in query
    assert flow.token(flow.code_from(response)).status_code == 200
    assert not InternalServiceNotice.objects.exists()
    # The next interactive request shows the page.
    assert is_notice_page(OIDCFlow(flow.browser, flow.rp).authorize())


def test_prompt_none_without_sign_in_is_still_login_required(client, internal):
    response = OIDCFlow(client, internal).authorize(prompt="none")
    assert location_query(response)["error"] == ["login_required"]


def test_prompt_consent_shows_the_page_again(flow):
    flow.get_code()
    assert is_notice_page(OIDCFlow(flow.browser, flow.rp).authorize(prompt="consent"))


# --- failures: never a code without the resident's click on a live page --------------------------


def test_continue_needs_the_csrf_token(flow):
    page = flow.authorize()
    flow.browser.handler.enforce_csrf_checks = True
    try:
        response = flow.browser.post("/authorize/information", {"pending": page.context["notice_id"]})
    finally:
        flow.browser.handler.enforce_csrf_checks = False
    assert response.status_code == 403
    assert not InternalServiceNotice.objects.exists()


def test_continue_is_post_only(flow):
    page = flow.authorize()
    response = flow.browser.get("/authorize/information", {"pending": page.context["notice_id"]})
    assert response.status_code == 405


@pytest.mark.parametrize("pending", ["", "unknown"])
def test_unknown_notice_is_an_error_page(flow, pending):
    flow.authorize()
    response = flow.browser.post("/authorize/information", {"pending": pending})
    assert response.status_code == 400
    assert not InternalServiceNotice.objects.exists()


def test_a_notice_is_used_once(flow):
    page = flow.authorize()
    assert continue_with_csrf(flow.browser, page).status_code == 303
    again = flow.browser.post("/authorize/information", {"pending": page.context["notice_id"]})
    assert again.status_code == 400


def test_an_expired_notice_is_an_error_page(flow, monkeypatch):
    page = flow.authorize()
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 31 * 60)
    response = flow.browser.post("/authorize/information", {"pending": page.context["notice_id"]})
    assert response.status_code == 400
    assert not InternalServiceNotice.objects.exists()


def test_another_residents_notice_is_refused(flow, make_resident):
    page = flow.authorize()
    flow.browser.post("/deconnexion/")
    other = make_resident("dominique@example.org")
    sign_in(flow.browser, other.email)
    response = flow.browser.post("/authorize/information", {"pending": page.context["notice_id"]})
    assert response.status_code == 400
    assert not InternalServiceNotice.objects.exists()


def test_signed_out_meanwhile_is_refused(flow):
    page = flow.authorize()
    flow.browser.post("/deconnexion/")
    response = flow.browser.post("/authorize/information", {"pending": page.context["notice_id"]})
    assert response.status_code == 400
    assert not InternalServiceNotice.objects.exists()


def test_client_no_longer_internal_gets_no_code_from_the_page(flow, internal):
    page = flow.authorize()
    internal.client.is_internal = False
    internal.client.save()
    response = flow.browser.post("/authorize/information", {"pending": page.context["notice_id"]})
    assert response.status_code == 400
    assert not InternalServiceNotice.objects.exists()


def test_the_notice_does_not_override_an_objection(flow, resident, internal):
    """The record is information given, not a permission: the ledger still rules claims."""
    tokens = flow.token(flow.get_code()).json()
    code = sharing_purpose_code(internal.client, ["openid", "profile", "email"])
    consent_record(user=resident, purpose_code=code, event_type="withdrawn", collection_method="web_form")
    assert userinfo(tokens["access_token"]).json() == {"sub": str(resident.pk)}


# --- the read at every authorization: one statement (issue 14) ----------------------------------


def test_covers_reads_the_record_as_the_orm_does(internal, resident, make_resident, make_client):
    """internal_notice_covers runs one statement written once per process: its answers are
    the ORM's for no record, a record covering the scopes, one not covering them, and the
    records of another resident or another service (which never count)."""
    service = internal.client
    other_resident, other_service = make_resident(), make_client(name="Autre", is_internal=True).client

    def orm(user: Any, client: Any, scopes: list[str]) -> bool:
        noticed = InternalServiceNotice.objects.filter(user=user, client=client).values_list(
            "scopes", flat=True
        )
        return bool(noticed) and set(scopes) <= set(noticed[0].split())

    cases = [(["openid"]), (["openid", "email"]), (["openid", "email", "phone"]), ([])]
    internal_notice_record(user=other_resident, client=service, scopes=["openid", "email", "phone"])
    internal_notice_record(user=resident, client=other_service, scopes=["openid", "email", "phone"])
    for scopes in cases:  # no record of this resident at this service
        assert internal_notice_covers(user=resident, client=service, scopes=scopes) is orm(
            resident, service, scopes
        )
    assert not internal_notice_covers(user=resident, client=service, scopes=["openid"])
    internal_notice_record(user=resident, client=service, scopes=["openid", "email"])
    answers = [internal_notice_covers(user=resident, client=service, scopes=s) for s in cases]
    assert answers == [orm(resident, service, s) for s in cases] == [True, True, False, True]
    with CaptureQueriesContext(connection) as queries:
        internal_notice_covers(user=resident, client=service, scopes=["openid"])
    assert len(queries.captured_queries) == 1


@pytest.mark.skipif("connection.vendor != 'postgresql'")
@pytest.mark.parametrize("prepared", [True, False], ids=["prepared", "unprepared"])
def test_covers_on_the_kept_cursor_prepared_or_not(internal, resident, settings, prepared):
    """With nobody capturing queries the read runs on the cursor kept per connection, as a
    prepared statement when the deployment allows it (server-side binding of the resident's
    UUID and the client's id): the same answers either way."""
    settings.CONSENT_PREPARED_STATEMENTS = prepared
    service = internal.client
    assert not connection.queries_logged
    assert internal_notice_covers(user=resident, client=service, scopes=["openid"]) is False
    internal_notice_record(user=resident, client=service, scopes=["openid", "email"])
    assert internal_notice_covers(user=resident, client=service, scopes=["openid", "email"]) is True
    assert internal_notice_covers(user=resident, client=service, scopes=["openid", "phone"]) is False
    assert connection._kept_cursor[1] is prepared


# --- the notice checked in the code's INSERT (issue 14) -------------------------------------------


def _code_request(resident: Any, rp: Any, scopes: list[str]) -> tuple[Any, dict[str, Any]]:
    from django.test import RequestFactory  # noqa: PLC0415

    request = RequestFactory().get("/authorize")
    request.user = resident
    credentials = {
        "client_id": rp.client.client_id,
        "redirect_uri": REDIRECT_URI,
        "response_type": "code",
        "state": "s",
        "nonce": "n",
        "code_challenge": "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM",
        "code_challenge_method": "S256",
        "auth_time": None,
        "cum_sid": "sid",
        "cum_acr": "urn:cum:acr:basic",
        "cum_amr": ["pwd"],
    }
    return request, credentials


_ROW_OWN = {"id", "code", "created", "updated", "expires"}


@pytest.mark.skipif("connection.vendor != 'postgresql'")
def test_the_insert_with_the_notice_check_writes_what_the_plain_insert_writes(
    internal, resident, make_resident, make_client
):
    """code_issuance._write_code_if_noticed writes a row exactly when internal_notice_covers
    says the notice lists the scopes (no record, fewer scopes, another resident's or another
    service's record: nothing), and then the row `_write_code` writes, column by column."""
    from identity.oidc import code_issuance  # noqa: PLC0415
    from identity.oidc.models import AuthorizationCode  # noqa: PLC0415

    service = internal.client
    other_resident, other_service = make_resident(), make_client(name="Autre", is_internal=True).client
    internal_notice_record(user=other_resident, client=service, scopes=["openid", "email", "phone"])
    internal_notice_record(user=resident, client=other_service, scopes=["openid", "email", "phone"])
    cases = [["openid"], ["openid", "email"], ["openid", "email", "phone"], ["email", "openid"]]

    def written(scopes: list[str]) -> bool:
        request, credentials = _code_request(resident, internal, scopes)
        before = AuthorizationCode.objects.count()
        code = code_issuance.code_token()
        answer = code_issuance._write_code_if_noticed(request, service, code, scopes, credentials)
        assert AuthorizationCode.objects.count() == before + answer
        if answer:
            reference = code_issuance.code_token()
            code_issuance._write_code(request, service, reference, scopes, credentials)
            rows = {
                key: AuthorizationCode.objects.filter(code=key).values().get() for key in (code, reference)
            }
            assert {k: v for k, v in rows[code].items() if k not in _ROW_OWN} == {
                k: v for k, v in rows[reference].items() if k not in _ROW_OWN
            }
            assert abs(rows[code]["expires"] - rows[reference]["expires"]).total_seconds() < 5
        return answer

    for scopes in cases:  # no record of this resident at this service
        assert (
            written(scopes) is internal_notice_covers(user=resident, client=service, scopes=scopes) is False
        )
    internal_notice_record(user=resident, client=service, scopes=["openid", "email"])
    answers = [written(scopes) for scopes in cases]
    assert answers == [internal_notice_covers(user=resident, client=service, scopes=s) for s in cases]
    assert answers == [True, True, False, True]


def test_a_notice_split_by_other_whitespace_still_covers(flow, resident, internal):
    """The INSERT's test splits the noticed scopes on spaces; internal_notice_covers on any
    whitespace. Where they differ the INSERT writes nothing and the page is checked as before:
    the code is issued, no page shown."""
    flow.get_code()
    InternalServiceNotice.objects.filter(user=resident).update(scopes="email\topenid\nprofile")
    assert internal_notice_covers(
        user=resident, client=internal.client, scopes=["openid", "profile", "email"]
    )
    response = OIDCFlow(flow.browser, flow.rp).authorize()
    assert response.status_code == 303 and "code" in location_query(response)
    assert InternalServiceNotice.objects.get().scopes == "email\topenid\nprofile"  # nothing recorded


def test_a_noticed_authorization_reads_the_notice_in_the_codes_insert(flow):
    """On PostgreSQL the notice is read by the code's INSERT (one statement fewer); elsewhere
    by its own statement, as before. The same answer either way."""
    flow.get_code()
    with CaptureQueriesContext(connection) as queries:
        response = OIDCFlow(flow.browser, flow.rp).authorize()
    assert response.status_code == 303 and "code" in location_query(response)
    statements = [query["sql"] for query in queries.captured_queries]
    notice_reads = [sql for sql in statements if sql.startswith("SELECT") and "internalservicenotice" in sql]
    inserts = [sql for sql in statements if sql.startswith("INSERT") and "authorizationcode" in sql]
    assert len(inserts) == 1
    if connection.vendor == "postgresql":
        assert not notice_reads and "internalservicenotice" in inserts[0]
    else:
        assert len(notice_reads) == 1 and "internalservicenotice" not in inserts[0]


def test_the_page_still_answers_before_a_session_that_ended(flow, resident, monkeypatch):
    """The page comes first, as when it was checked before the code: a session that ended
    between the checks gives the page when it is due, and the sign-in error only after."""
    monkeypatch.setattr(
        "identity.oidc.authorization_request.browser_session_for_request", lambda request: None
    )
    assert is_notice_page(flow.authorize())
    internal_notice_record(user=resident, client=flow.rp.client, scopes=["openid", "profile", "email"])
    response = OIDCFlow(flow.browser, flow.rp).authorize()
    assert response.status_code != 303 and not is_notice_page(response)
    assert "login_required" in response.content.decode()
