"""The DPO sets the half-life of inferred interests from the console (/dpo/personnalisation/)."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client as BrowserClient

from consent.dpo import navigation
from consent.rights import rights_erase
from identity.models import AuditEvent
from profiles.models import InferenceSettings
from profiles.selectors import half_life_days
from tests.conftest import MFA_AMR, open_session, staff_mfa_login

pytestmark = pytest.mark.django_db

URL = "/dpo/personnalisation/"


@pytest.fixture
def dpo(make_resident: Any) -> Any:
    user = make_resident("dpo@nantesmetropole.fr")
    user.is_staff = True
    user.save(update_fields=["is_staff"])
    user.groups.add(Group.objects.get_or_create(name="dpo")[0])
    return user


@pytest.fixture
def dpo_http(dpo: Any) -> BrowserClient:
    return staff_mfa_login(BrowserClient(), dpo)


def test_the_page_shows_the_current_value_and_what_it_means(dpo_http: BrowserClient) -> None:
    page = dpo_http.get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert "30 jours" in html  # the default
    assert "personne : valeur par défaut" in html
    assert "dans 30 jours, elle ne comptera plus que pour 1/2" in html
    assert "Dans 60 jours, elle comptera pour 1/4" in html
    assert "après environ 150 jours" in html
    assert "depuis 395 jours" in html  # the browsing purpose's retention
    assert page.context["form"]["half_life_days"].value() == 30


def test_the_console_navigation_lists_the_page(dpo_http: BrowserClient) -> None:
    html = dpo_http.get("/dpo/").content.decode()
    assert f'<a href="{URL}">Personnalisation</a>' in html
    own = dpo_http.get(URL).content.decode()
    assert f'<a href="{URL}" aria-current="page">Personnalisation</a>' in own


def test_the_page_speaks_english(dpo_http: BrowserClient) -> None:
    dpo_http.cookies["language"] = "en"
    html = dpo_http.get(URL).content.decode()
    assert "Personalisation: half-life of interests" in html
    assert "30 days" in html


def test_the_dpo_sets_the_half_life_and_the_change_is_audited(dpo: Any, dpo_http: BrowserClient) -> None:
    response = dpo_http.post(URL, {"half_life_days": "14"})
    assert response.status_code == 302 and response["Location"] == URL
    assert half_life_days() == 14
    row = InferenceSettings.objects.get(pk=1)
    assert row.updated_by == dpo
    audit = AuditEvent.objects.get(event="profiles.half_life_changed")
    assert audit.acting_user_id == dpo.pk and audit.data == {"before_days": 30, "after_days": 14}
    page = dpo_http.get(URL)
    html = page.content.decode()
    assert "Demi-vie enregistrée : 14 jours." in html
    assert "14 jours" in html and dpo.email in html
    # Every request of a staff page is audited too (identity.reauth).
    assert AuditEvent.objects.filter(event="staff.request", acting_user_id=dpo.pk).exists()


@pytest.mark.parametrize("value", ["0", "366", "-3", "7.5", "quinze", ""])
def test_bad_values_are_refused_with_a_readable_error(dpo_http: BrowserClient, value: str) -> None:
    response = dpo_http.post(URL, {"half_life_days": value})
    assert response.status_code == 400
    assert response.context["form"].errors["half_life_days"]
    assert 'class="error-summary"' in response.content.decode()
    assert not InferenceSettings.objects.exists()
    assert not AuditEvent.objects.filter(event="profiles.half_life_changed").exists()


def test_a_change_needs_a_recent_second_factor_sign_in(dpo: Any) -> None:
    stale = open_session(BrowserClient(), dpo, MFA_AMR, age=3600)
    assert stale.get(URL).status_code == 200  # reading is fine
    response = stale.post(URL, {"half_life_days": "14"})
    assert response.status_code == 302 and not response["Location"].startswith(URL)
    assert not InferenceSettings.objects.exists()


def test_a_password_only_staff_session_is_sent_to_its_second_factor(dpo: Any) -> None:
    weak = open_session(BrowserClient(), dpo, ("pwd",))
    response = weak.get(URL)
    assert response.status_code == 302 and not response["Location"].startswith(URL)


def test_residents_staff_outside_the_dpo_group_and_visitors_are_refused(make_resident: Any) -> None:
    visitor = BrowserClient().get(URL)
    assert visitor.status_code == 302 and "/connexion/" in visitor["Location"]
    resident = open_session(BrowserClient(), make_resident("bob@example.org"), MFA_AMR)
    assert resident.get(URL).status_code == 403
    assert resident.post(URL, {"half_life_days": "14"}).status_code == 403
    staff = make_resident("agent@nantesmetropole.fr")
    staff.is_staff = True
    staff.save(update_fields=["is_staff"])
    assert (
        open_session(BrowserClient(), staff, MFA_AMR).post(URL, {"half_life_days": "14"}).status_code == 403
    )
    assert not InferenceSettings.objects.exists()


def test_csrf_is_required(dpo: Any) -> None:
    strict = open_session(BrowserClient(enforce_csrf_checks=True), dpo, MFA_AMR)
    assert strict.post(URL, {"half_life_days": "14"}).status_code == 403
    assert not InferenceSettings.objects.exists()


def test_a_page_registered_twice_is_refused() -> None:
    page = navigation.DpoPage(url_name="profiles-dpo:inference", label="x")
    with pytest.raises(navigation.NavigationError):
        navigation.register_page(page)


def test_erasing_the_dpos_account_forgets_who_set_the_half_life(dpo: Any, dpo_http: BrowserClient) -> None:
    dpo_http.post(URL, {"half_life_days": "21"})
    rights_erase(dpo)
    row = InferenceSettings.objects.get(pk=1)
    assert row.half_life_days == 21 and row.updated_by is None
