"""Signing keys: per-client algorithm, JWKS, rotation with publication ahead, retirement, pruning."""

from __future__ import annotations

import base64
import io
import json
import time
from datetime import timedelta
from types import SimpleNamespace
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import F
from django.test import Client as BrowserClient
from django.utils import timezone
from jwcrypto import jwk as jwcrypto_jwk
from jwcrypto.common import JWException

from identity import keys
from identity.keys import active_signing_key, clear_key_cache, signing_key_rotate, signing_keys_prune
from identity.models import SigningKey
from identity.oidc.clients import client_register
from tests.conftest import REDIRECT_URI, OIDCFlow, RegisteredClient, verify_id_token
from tests.oidc.conftest import complete_flow, post_token

HOUR = timedelta(hours=1)


def jwks_kids() -> list[str]:
    response = BrowserClient().get("/jwks.json")
    return [key["kid"] for key in response.json()["keys"]]


def header_of(token: str) -> dict[str, Any]:
    part = token.split(".")[0]
    return json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))


def time_passes(seconds: float) -> None:
    """Move every key's schedule into the past, as if `seconds` had elapsed."""
    delta = timedelta(seconds=seconds)
    SigningKey.objects.update(active_from=F("active_from") - delta, created_at=F("created_at") - delta)
    SigningKey.objects.filter(retired_at__isnull=False).update(retired_at=F("retired_at") - delta)
    SigningKey.objects.filter(expires_at__isnull=False).update(expires_at=F("expires_at") - delta)
    clear_key_cache()  # the in-process cache would have expired in that time too


def new_id_token(flow: OIDCFlow) -> str:
    return complete_flow(OIDCFlow(flow.browser, flow.rp))["id_token"]


def test_es256_client_gets_es256_id_tokens(signed_in: BrowserClient, make_client: Any) -> None:
    partner = make_client(name="Transports", signing_alg="ES256")
    tokens = complete_flow(OIDCFlow(signed_in, partner))
    header = header_of(tokens["id_token"])
    assert header["alg"] == "ES256"
    assert header["kid"] == active_signing_key("ES256").kid
    assert verify_id_token(tokens["id_token"], partner.client_id)["sub"]


def test_new_partners_default_to_es256_and_rs256_stays_selectable(
    signed_in: BrowserClient, signing_keys: Any
) -> None:
    default, secret = client_register(name="Piscines", redirect_uris=[REDIRECT_URI], grant_types=[])
    assert default.algorithm == "ES256"
    header = header_of(complete_flow(OIDCFlow(signed_in, RegisteredClient(default, secret)))["id_token"])
    assert header["alg"] == "ES256"

    chosen, secret = client_register(
        name="Médiathèques", redirect_uris=[REDIRECT_URI], grant_types=[], signing_alg="RS256"
    )
    assert chosen.algorithm == "RS256"
    header = header_of(complete_flow(OIDCFlow(signed_in, RegisteredClient(chosen, secret)))["id_token"])
    assert header["alg"] == "RS256"


def test_partners_registered_before_the_default_keep_rs256(flow: OIDCFlow, tokens: dict[str, Any]) -> None:
    # The model's column default is blank (django-oauth-toolkit's): such rows sign RS256.
    flow.rp.client.algorithm = ""
    flow.rp.client.save()
    assert header_of(new_id_token(flow))["alg"] == "RS256"


def test_new_key_is_published_at_once_but_signs_only_after_the_delay(flow: OIDCFlow, tokens: Any) -> None:
    old_kid = header_of(tokens["id_token"])["kid"]
    new = signing_key_rotate(algorithm="RS256", publish_ahead=HOUR)
    kids = jwks_kids()
    assert new.kid in kids and old_kid in kids
    assert len(kids) == len(set(kids))  # unique kids
    # During the publication delay the old key keeps signing.
    assert header_of(new_id_token(flow))["kid"] == old_kid

    time_passes(HOUR.total_seconds() + 1)
    fresh = new_id_token(flow)
    assert header_of(fresh)["kid"] == new.kid
    assert verify_id_token(fresh, flow.rp.client_id)
    # A token signed by the old key before the switch still verifies with the JWKS.
    assert verify_id_token(tokens["id_token"], flow.rp.client_id)
    assert old_kid in jwks_kids()


def test_every_node_switches_at_the_scheduled_time_despite_its_key_cache(
    flow: OIDCFlow, tokens: Any, monkeypatch: Any
) -> None:
    # identity.keys' own clocks, moved by hand: no sleep, and a busy machine cannot let the
    # 3 s pass between the rotation and the first check.
    started = time.monotonic(), timezone.now()
    elapsed = [0.0]
    monkeypatch.setattr("identity.keys.time", SimpleNamespace(monotonic=lambda: started[0] + elapsed[0]))
    monkeypatch.setattr(
        "identity.keys.timezone", SimpleNamespace(now=lambda: started[1] + timedelta(seconds=elapsed[0]))
    )
    old = active_signing_key("RS256")
    new = signing_key_rotate(algorithm="RS256", publish_ahead=timedelta(seconds=3))
    assert active_signing_key("RS256").kid == old.kid  # cached, still the signing key
    elapsed[0] = 2.9
    assert active_signing_key("RS256").kid == old.kid
    elapsed[0] = 3.1
    assert active_signing_key("RS256").kid == new.kid  # no clear_key_cache(): the cache knew


def test_old_key_leaves_jwks_only_after_its_tokens_expired(flow: OIDCFlow, tokens: Any) -> None:
    old_kid = header_of(tokens["id_token"])["kid"]
    signing_key_rotate(algorithm="RS256", publish_ahead=timedelta(0))
    old = SigningKey.objects.get(kid=old_kid)
    lifetime = (old.expires_at - old.retired_at).total_seconds()
    assert lifetime >= 600  # at least the ID token lifetime (10 min)

    time_passes(lifetime - 5)
    assert old_kid in jwks_kids()
    assert signing_keys_prune() == []  # nothing expired yet
    assert verify_id_token(tokens["id_token"], flow.rp.client_id)

    time_passes(10)
    assert old_kid not in jwks_kids()
    assert signing_keys_prune() == [old_kid]
    old.refresh_from_db()
    assert bytes(old.private_key_encrypted) == b""  # the private half is destroyed
    assert old.public_jwk["kid"] == old_kid  # the public half stays for historical signatures
    with pytest.raises(JWException):
        verify_id_token(tokens["id_token"], flow.rp.client_id)
    assert header_of(new_id_token(flow))["kid"] != old_kid


def test_refreshed_id_tokens_use_the_current_key(flow: OIDCFlow, tokens: Any) -> None:
    new = signing_key_rotate(algorithm="RS256", publish_ahead=timedelta(0))
    body = post_token(
        {"grant_type": "refresh_token", "refresh_token": tokens["refresh_token"]}, auth=flow.rp.basic_auth()
    ).json()
    assert header_of(body["id_token"])["kid"] == new.kid


# --- manage.py rotate_keys ------------------------------------------------------------------------


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("rotate_keys", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


def test_rotate_keys_command_rotates_the_chosen_algorithm(signing_keys: Any) -> None:
    before = dict(SigningKey.objects.values_list("algorithm", "kid"))
    payload = json.loads(run("--algorithm", "ES256", "--publish-ahead-seconds", "600", "--json"))
    (rotated,) = payload["rotated"]
    assert rotated["algorithm"] == "ES256"
    new = SigningKey.objects.get(kid=rotated["kid"])
    old = SigningKey.objects.get(kid=before["ES256"])
    assert old.retired_at == new.active_from
    assert (new.active_from - new.created_at).total_seconds() == pytest.approx(600, abs=5)
    assert SigningKey.objects.get(kid=before["RS256"]).retired_at is None  # untouched
    assert set(jwks_kids()) == {before["RS256"], before["ES256"], new.kid}


def test_rotate_keys_default_publication_delay_covers_the_jwks_cache(
    signing_keys: Any, settings: Any
) -> None:
    payload = json.loads(run("--algorithm", "RS256", "--json"))
    new = SigningKey.objects.get(kid=payload["rotated"][0]["kid"])
    delay = (new.active_from - new.created_at).total_seconds()
    max_age = int(BrowserClient().get("/jwks.json")["Cache-Control"].split("max-age=")[1])
    assert delay >= max_age
    assert delay == pytest.approx(settings.OIDC_KEY_PUBLISH_AHEAD_SECONDS, abs=5)


def test_rotate_keys_prune_and_refusals(signing_keys: Any) -> None:
    assert "pruned 0 key(s)" in run("--prune")
    with pytest.raises(CommandError) as excinfo:
        run("--publish-ahead-seconds", "-1")
    assert "\n" not in str(excinfo.value)
    with pytest.raises(CommandError):
        run("--prune", "--algorithm", "RS256")


def test_a_signing_key_is_parsed_once_per_process(signing_keys, monkeypatch):
    """The in-process cache expires every 30 s; the costly RSA parse must not follow it."""
    keys._parsed_keys.clear()
    keys.clear_key_cache()
    calls = []
    original = jwcrypto_jwk.JWK.from_pem

    def counting(pem, *args, **kwargs):
        calls.append(1)
        return original(pem, *args, **kwargs)

    monkeypatch.setattr(jwcrypto_jwk.JWK, "from_pem", staticmethod(counting))
    first = keys.active_signing_key("RS256")
    keys.clear_key_cache()  # as when the 30 s cache lapses
    second = keys.active_signing_key("RS256")
    assert first.kid == second.kid
    assert len(calls) == 1
