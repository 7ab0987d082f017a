"""The bearer path (config/bearer_path.py) and the code and refresh grants at /token.

These grants have side effects even when refused (a code is claimed; a replayed code or a
reused refresh token revokes a family), so the same request cannot be sent twice. Each
scenario is played twice from the same starting point, in two worlds: once through the
protocol stack without the bearer path (Django alone), once with the bearer path in front.
Both must give, step by step, the same status, the same headers in the same order (the
X-Request-ID value aside), the same body (token values aside: an access token's header and
claims but jti/iat/exp, an ID token's claims but jti/iat/exp/at_hash) and the same database
effects (rows issued, refresh tokens revoked, the first access token still usable or not).
On the bearer path, the view's work is done once per request: a refusal is handed to Django
with the outcome computed, never computed again.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.conf import settings
from django.utils import timezone

from config.bearer_path import BearerPath
from identity.oidc.models import AccessToken, AuthorizationCode, IDToken, RefreshToken
from identity.oidc.views import token as token_view
from tests.conftest import REDIRECT_URI, OIDCFlow, RegisteredClient
from tests.oidc.test_bearer_path import (
    API,
    Partners,
    Stacks,
    build_partners,
    build_stacks,
    comparable,
)
from tests.oidc.test_lean_protocol_path import FORM, Answer, Request, call, form

pytestmark = pytest.mark.django_db

PER_TOKEN = ("jti", "iat", "exp", "at_hash")


def _claims(jwt: str) -> tuple[str, dict[str, Any]]:
    header, payload, _signature = jwt.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    lifetime = claims.get("exp", 0) - claims.get("iat", 0)
    kept = {name: value for name, value in claims.items() if name not in PER_TOKEN}
    return header, {**kept, "<lifetime>": lifetime}


def comparable_body(answer: Answer) -> Any:
    if not answer.status.startswith("200"):
        return answer.body
    fields = json.loads(answer.body)
    for name in ("access_token", "id_token"):
        if name in fields:
            fields[name] = _claims(fields[name])
    if "refresh_token" in fields:
        fields["refresh_token"] = len(fields["refresh_token"])
    return list(fields.items())


def effects() -> dict[str, int]:
    return {
        "access tokens": AccessToken.objects.count(),
        "refresh tokens": RefreshToken.objects.count(),
        "refresh tokens revoked": RefreshToken.objects.filter(revoked__isnull=False).count(),
        "codes": AuthorizationCode.objects.count(),
        "id tokens": IDToken.objects.count(),
    }


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    return {name: after[name] - before[name] for name in before}


@dataclass
class World:
    """One world's play of a scenario: its answers and its database effects."""

    app: Any
    flow: OIDCFlow
    answers: list[Answer] = field(default_factory=list)

    def send(self, request: Request) -> Answer:
        answer = call(self.app, request)
        self.answers.append(answer)
        return answer


Prepare = Callable[[OIDCFlow], dict[str, Any]]
Steps = Callable[[World, dict[str, Any]], None]


def userinfo_status(stacks: Stacks, access: str) -> str:
    return call(stacks.full, Request("GET", "/userinfo", {"Authorization": f"Bearer {access}"})).status


def play(stacks: Stacks, flow: OIDCFlow, prepare: Prepare, steps: Steps, name: str) -> list[Answer]:
    """The scenario in both worlds (Django alone, then the bearer path); compared step by step."""
    results = []
    for app in (stacks.full, stacks.lean):
        context = prepare(flow)
        world = World(app, flow)
        before = effects()
        steps(world, context)
        after = effects()
        still = userinfo_status(stacks, context["access"]) if "access" in context else None
        results.append((world.answers, delta(before, after), still))
    (full, full_effects, full_still), (lean, lean_effects, lean_still) = results
    assert len(full) == len(lean), name
    for step, (one, other) in enumerate(zip(full, lean, strict=True)):
        what = f"{name}, step {step + 1}"
        assert other.status == one.status, (what, one.body, other.body)
        assert comparable_body(other) == comparable_body(one), what
        assert comparable(other) == comparable(one), what
    assert lean_effects == full_effects, name
    assert lean_still == full_still, name
    return lean


# --- Requests --------------------------------------------------------------------------------


def basic(rp: RegisteredClient, data: dict[str, str] | list[tuple[str, str]]) -> Request:
    return form("/token", data, Authorization=rp.basic_auth())


def code_data(flow: OIDCFlow, code: str, **extra: str) -> dict[str, str]:
    return {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT_URI,
        "code_verifier": flow.verifier,
        **extra,
    }


def refresh_data(refresh: str, **extra: str) -> dict[str, str]:
    return {"grant_type": "refresh_token", "refresh_token": refresh, **extra}


def with_code(flow: OIDCFlow) -> dict[str, Any]:
    return {"code": flow.get_code()}


def with_tokens(flow: OIDCFlow) -> dict[str, Any]:
    code = flow.get_code(resource=[settings.ISSUER, API])
    response = flow.token(code, resource=[settings.ISSUER, API])
    assert response.status_code == 200, response.content
    tokens = response.json()
    return {"access": tokens["access_token"], "refresh": tokens["refresh_token"]}


def scenarios(partners: Partners, other: RegisteredClient) -> dict[str, tuple[Prepare, Steps]]:
    rp = partners.rp
    flow = partners.flow

    def rotation(world: World, c: dict[str, Any]) -> None:
        first = world.send(basic(rp, refresh_data(c["refresh"])))
        second = json.loads(first.body)["refresh_token"]
        world.send(basic(rp, refresh_data(second)))

    def reuse(world: World, c: dict[str, Any]) -> None:
        first = world.send(basic(rp, refresh_data(c["refresh"])))
        rotated = json.loads(first.body)["refresh_token"]
        world.send(basic(rp, refresh_data(c["refresh"])))  # reused: the family is revoked
        world.send(basic(rp, refresh_data(rotated)))  # so is its successor

    def expired_refresh(world: World, c: dict[str, Any]) -> None:
        old = timezone.now() - timedelta(days=30)
        AccessToken.objects.update(expires=old)  # a refresh token's expiry slides with it
        world.send(basic(rp, refresh_data(c["refresh"])))

    def exchange(world: World, c: dict[str, Any]) -> None:
        answer = world.send(basic(rp, code_data(flow, c["code"])))
        world.send(basic(rp, refresh_data(json.loads(answer.body)["refresh_token"])))

    def replay(world: World, c: dict[str, Any]) -> None:
        answer = world.send(basic(rp, code_data(flow, c["code"])))
        access = json.loads(answer.body)["access_token"]
        world.send(basic(rp, code_data(flow, c["code"])))  # replayed: what it issued is revoked
        world.answers.append(
            Answer(userinfo_status(stacks_of(world), access), [], b"")  # revoked in both worlds
        )

    def expired_code(world: World, c: dict[str, Any]) -> None:
        AuthorizationCode.objects.filter(code=c["code"]).update(expires=timezone.now() - timedelta(minutes=5))
        world.send(basic(rp, code_data(flow, c["code"])))

    def one(request: Callable[[dict[str, Any]], Request]) -> Steps:
        return lambda world, c: (world.send(request(c)), None)[1]

    post_auth = {"client_id": rp.client_id, "client_secret": str(rp.secret)}
    return {
        "fresh refresh": (with_tokens, one(lambda c: basic(rp, refresh_data(c["refresh"])))),
        "refresh, a narrower scope": (
            with_tokens,
            one(lambda c: basic(rp, refresh_data(c["refresh"], scope="openid"))),
        ),
        "refresh, a resource": (
            with_tokens,
            one(lambda c: basic(rp, refresh_data(c["refresh"], resource=API))),
        ),
        "refresh, a resource not granted": (
            with_tokens,
            one(lambda c: basic(rp, refresh_data(c["refresh"], resource="https://ailleurs.example.org"))),
        ),
        "rotation": (with_tokens, rotation),
        "reuse of a rotated refresh token": (with_tokens, reuse),
        "expired refresh token": (with_tokens, expired_refresh),
        "another client's refresh token": (
            with_tokens,
            one(lambda c: basic(other, refresh_data(c["refresh"]))),
        ),
        "refresh, wrong secret": (
            with_tokens,
            one(
                lambda c: form(
                    "/token", refresh_data(c["refresh"]), Authorization=_basic(rp.client_id, "faux")
                )
            ),
        ),
        "refresh, client_secret_post on a basic client": (
            with_tokens,
            one(lambda c: form("/token", {**refresh_data(c["refresh"]), **post_auth})),
        ),
        "refresh, no client authentication": (
            with_tokens,
            one(lambda c: form("/token", refresh_data(c["refresh"]))),
        ),
        "refresh, unknown token": (with_tokens, one(lambda c: basic(rp, refresh_data("inconnu")))),
        "refresh, refresh_token missing": (
            with_tokens,
            one(lambda c: basic(rp, {"grant_type": "refresh_token"})),
        ),
        "refresh, refresh_token twice": (
            with_tokens,
            one(
                lambda c: basic(
                    rp,
                    [
                        ("grant_type", "refresh_token"),
                        ("refresh_token", c["refresh"]),
                        ("refresh_token", "x"),
                    ],
                )
            ),
        ),
        "code exchange": (with_code, exchange),
        "code exchange, form with a charset": (
            with_code,
            one(
                lambda c: Request(
                    "POST",
                    "/token",
                    {"Authorization": rp.basic_auth()},
                    urlencode(code_data(flow, c["code"])).encode(),
                    FORM + "; charset=utf-8",
                )
            ),
        ),
        "code replay": (with_code, replay),
        "expired code": (with_code, expired_code),
        "wrong verifier": (
            with_code,
            one(lambda c: basic(rp, code_data(flow, c["code"], code_verifier="x" * 50))),
        ),
        "verifier missing": (
            with_code,
            one(
                lambda c: basic(
                    rp, {k: v for k, v in code_data(flow, c["code"]).items() if k != "code_verifier"}
                )
            ),
        ),
        "wrong redirect_uri": (
            with_code,
            one(lambda c: basic(rp, code_data(flow, c["code"], redirect_uri=REDIRECT_URI + "/autre"))),
        ),
        "redirect_uri missing": (
            with_code,
            one(
                lambda c: basic(
                    rp, {k: v for k, v in code_data(flow, c["code"]).items() if k != "redirect_uri"}
                )
            ),
        ),
        "code, a resource not asked for": (
            with_code,
            one(lambda c: basic(rp, code_data(flow, c["code"], resource=API))),
        ),
        "code twice in the form": (
            with_code,
            one(lambda c: basic(rp, [*code_data(flow, c["code"]).items(), ("code", c["code"])])),
        ),
        "code missing": (with_code, one(lambda c: basic(rp, {**code_data(flow, "x"), "code": ""}))),
        "another client's code": (with_code, one(lambda c: basic(other, code_data(flow, c["code"])))),
        "code, wrong secret": (
            with_code,
            one(
                lambda c: form(
                    "/token", code_data(flow, c["code"]), Authorization=_basic(rp.client_id, "faux")
                )
            ),
        ),
        "code, unknown grant type then the code grant (the last counts)": (
            with_code,
            one(lambda c: basic(rp, [("grant_type", "password"), *code_data(flow, c["code"]).items()])),
        ),
    }


_STACKS: dict[int, Stacks] = {}


def stacks_of(world: World) -> Stacks:
    return _STACKS[0]


def _basic(client_id: str, secret: str) -> str:
    return "Basic " + base64.b64encode(f"{client_id}:{secret}".encode()).decode()


@pytest.fixture(name="partners")
def partners_fixture(make_client: Any, flow: OIDCFlow) -> Partners:
    return build_partners(make_client, flow)


@pytest.fixture(name="stacks")
def stacks_fixture(partners: Partners) -> Stacks:
    return build_stacks()


@pytest.fixture
def other(make_client: Any) -> RegisteredClient:
    return make_client(name="Autre partenaire")


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many times the token endpoint's grant work ran."""
    calls = [0]
    real = token_view.token_response

    def counting(request: Any) -> Any:
        calls[0] += 1
        return real(request)

    monkeypatch.setattr(token_view, "token_response", counting)
    return calls


def test_code_and_refresh_grants_give_django_s_answers_and_effects(
    stacks: Stacks, partners: Partners, other: RegisteredClient, counted: list[int]
):
    _STACKS[0] = stacks
    statuses = {}
    for name, (prepare, steps) in scenarios(partners, other).items():
        statuses[name] = [answer.status[:3] for answer in play(stacks, partners.flow, prepare, steps, name)]
    # The scenarios are what they say (both worlds gave these).
    assert statuses["rotation"] == ["200", "200"]
    assert statuses["reuse of a rotated refresh token"] == ["200", "400", "400"]
    assert statuses["expired refresh token"] == ["400"]
    assert statuses["code exchange"] == ["200", "200"]
    assert statuses["code replay"] == ["200", "400", "401"]  # the first answer's token revoked
    assert statuses["refresh, wrong secret"] == statuses["code, wrong secret"] == ["401"]
    for name in ("wrong verifier", "wrong redirect_uri", "expired code", "another client's code"):
        assert statuses[name] == ["400"], name
    # The bearer path learned Django's headers for a 200 and answers those itself now.
    assert ("/token", "POST", False) in stacks.lean._once_stored


def test_each_request_is_computed_once_and_successes_are_answered_here(
    stacks: Stacks, partners: Partners, counted: list[int]
):
    rp, flow = partners.rp, partners.flow
    tokens = with_tokens(flow)
    stacks.lean_handler.calls, counted[0] = 0, 0
    first = call(stacks.lean, basic(rp, refresh_data(tokens["refresh"])))  # learning: via Django
    assert first.status.startswith("200") and stacks.lean_handler.calls == 1 and counted[0] == 1
    rotated = json.loads(first.body)["refresh_token"]
    second = call(stacks.lean, basic(rp, refresh_data(rotated)))  # answered here
    assert second.status.startswith("200") and stacks.lean_handler.calls == 1 and counted[0] == 2
    assert comparable(second) == comparable(first)
    refused = call(stacks.lean, basic(rp, refresh_data(rotated)))  # reuse: handed over, once
    assert refused.status.startswith("400") and stacks.lean_handler.calls == 2 and counted[0] == 3
    code = flow.get_code()
    counted[0] = 0
    exchanged = call(stacks.lean, basic(rp, code_data(flow, code)))
    assert exchanged.status.startswith("200") and counted[0] == 1 and stacks.lean_handler.calls == 2
    assert json.loads(exchanged.body)["id_token"]
    replayed = call(stacks.lean, basic(rp, code_data(flow, code)))
    assert replayed.status.startswith("400") and counted[0] == 2 and stacks.lean_handler.calls == 3
    assert userinfo_status(stacks, json.loads(exchanged.body)["access_token"]).startswith("401")


def test_a_public_client_as_registered(
    stacks: Stacks, partners: Partners, make_client: Any, counted: list[int]
):
    public = make_client(name="Appli mobile", public=True)
    public_flow = OIDCFlow(partners.flow.browser, public)
    _STACKS[0] = stacks

    def exchange_and_refresh(world: World, c: dict[str, Any]) -> None:
        data = {**code_data(public_flow, c["code"]), "client_id": public.client_id}
        answer = world.send(form("/token", data))
        refresh = json.loads(answer.body)["refresh_token"]
        world.send(form("/token", {**refresh_data(refresh), "client_id": public.client_id}))
        world.send(form("/token", {**refresh_data(refresh), "client_id": public.client_id}))  # reuse

    def with_a_secret(world: World, c: dict[str, Any]) -> None:
        data = {**code_data(public_flow, c["code"]), "client_id": public.client_id, "client_secret": "x"}
        world.send(form("/token", data))

    def without_client_id(world: World, c: dict[str, Any]) -> None:
        world.send(form("/token", code_data(public_flow, c["code"])))

    for name, steps in {
        "public: exchange, refresh, reuse": exchange_and_refresh,
        "public: a client_secret": with_a_secret,
        "public: no client_id": without_client_id,
    }.items():
        play(stacks, public_flow, with_code, steps, name)


def test_an_exception_in_the_computation_is_raised_in_django_s_cycle(
    partners: Partners, monkeypatch: pytest.MonkeyPatch
):
    stacks = build_stacks()
    tokens = with_tokens(partners.flow)
    calls = [0]

    def broken(request: Any) -> Any:
        calls[0] += 1
        raise RuntimeError("boom")

    monkeypatch.setattr(token_view, "token_response", broken)
    stacks.lean_handler.calls = 0
    answer = call(stacks.lean, basic(partners.rp, refresh_data(tokens["refresh"])))
    assert answer.status.startswith("500") and calls[0] == 1 and stacks.lean_handler.calls == 1


def test_a_client_cannot_inject_a_precomputed_answer(partners: Partners, counted: list[int]):
    """Headers reach the environ as HTTP_* keys; and only a Precomputed made for this very
    environ is taken: one made for another request, set by anything else, is ignored."""
    stacks = build_stacks()
    tokens = with_tokens(partners.flow)
    request = basic(partners.rp, refresh_data(tokens["refresh"]))
    request.headers["Cum.Token-Outcome"] = "x"
    request.headers["cum.token_outcome"] = "x"
    counted[0] = 0
    answer = call(stacks.full, request)
    assert answer.status.startswith("200") and counted[0] == 1

    forged = token_view.Precomputed({}, None, RuntimeError("forged"), None)

    class Injecting:
        def __init__(self, app: Any) -> None:
            self.app = app

        def __call__(self, environ: Any, start_response: Any) -> Any:
            environ[token_view.PRECOMPUTED_KEY] = forged  # made for another environ
            return self.app(environ, start_response)

    for app in (Injecting(stacks.full), Injecting(BearerPath(stacks.lean_handler))):
        counted[0] = 0
        answer = call(app, basic(partners.rp, refresh_data(json.loads(answer.body)["refresh_token"])))
        assert answer.status.startswith("200") and counted[0] == 1, answer
