"""The client-credentials grant answered without oauthlib's request (identity/oidc
/token_endpoint._client_credentials) against the oauthlib path, beyond the scenarios of
test_token_differential.py: every authentication method and its refusals, a body `client_id`,
repeated parameters, scopes, targets, and the error bodies themselves (oauthlib echoes a
`state` parameter in them). Same status, error body and challenge on both paths, and for
successes the same response fields and token claims; each request also states its expected
answer.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.conf import settings

from tests.conftest import RegisteredClient
from tests.oidc.conftest import basic
from tests.oidc.test_token_differential import API, Env, env, post, summary  # noqa: F401 (fixture)

pytestmark = pytest.mark.django_db

OK = (200, None)
INVALID_CLIENT = (401, "invalid_client")


def _answer(response: Any, path: str) -> tuple[Any, ...]:
    body = json.loads(response.content)
    if response.status_code != 200:
        return (*summary(response, path), body)  # the whole error body, `state` included
    return summary(response, path)


def _requests(setup: Env, post_machine: RegisteredClient) -> list[tuple[Any, tuple[int, str | None]]]:
    cc = {"grant_type": "client_credentials"}
    machine = setup.machine
    post_form = {**cc, "client_id": post_machine.client_id, "client_secret": post_machine.secret}
    many = "&".join(f"resource=https://r{n}.example.org" for n in range(11))
    return [
        (lambda: post(post_form), OK),
        (lambda: post({**post_form, "client_secret": "wrong"}), INVALID_CLIENT),
        (lambda: post(post_form, auth=post_machine.basic_auth()), INVALID_CLIENT),  # two methods
        (lambda: post({**cc, "client_id": post_machine.client_id}), INVALID_CLIENT),
        (lambda: post(cc, auth=post_machine.basic_auth()), INVALID_CLIENT),  # not its method
        (lambda: post({**cc, "client_id": machine.client_id}, auth=machine.basic_auth()), OK),
        (
            lambda: post({**cc, "client_id": post_machine.client_id}, auth=machine.basic_auth()),
            INVALID_CLIENT,
        ),
        (
            lambda: post({**cc, "client_id": machine.client_id, "client_secret": machine.secret}),
            INVALID_CLIENT,
        ),
        (lambda: post({**cc, "state": "xyz"}, auth=basic(machine.client_id, "wrong")), INVALID_CLIENT),
        (
            lambda: post({**cc, "state": "xyz", "scope": "openid"}, auth=machine.basic_auth()),
            (400, "invalid_scope"),
        ),
        (lambda: post({**cc, "scope": "profile profile"}, auth=machine.basic_auth()), OK),
        (lambda: post({**cc, "scope": " profile "}, auth=machine.basic_auth()), OK),  # stripped
        (
            lambda: post({**cc, "scope": "profile  profile"}, auth=machine.basic_auth()),
            (400, "invalid_scope"),
        ),
        (
            lambda: post(
                "grant_type=authorization_code&grant_type=client_credentials", auth=machine.basic_auth()
            ),
            OK,
        ),
        (
            lambda: post(
                f"grant_type=client_credentials&resource={API}&resource={API}", auth=machine.basic_auth()
            ),
            OK,
        ),
        (
            lambda: post(f"grant_type=client_credentials&{many}", auth=machine.basic_auth()),
            (400, "invalid_target"),
        ),
        (
            lambda: post({**cc, "resource": settings.ISSUER + "#x"}, auth=machine.basic_auth()),
            (400, "invalid_target"),
        ),
        (lambda: post(cc), INVALID_CLIENT),
        (lambda: post(cc, auth=basic("unknown", "x")), INVALID_CLIENT),
        (lambda: post(cc, auth="basic " + machine.basic_auth()[6:]), INVALID_CLIENT),
        (lambda: post(cc, auth=basic(setup.public_rp.client_id, "")), INVALID_CLIENT),
        (lambda: post({**cc, "client_id": setup.public_rp.client_id}), INVALID_CLIENT),
        (lambda: post(cc, auth=setup.rp.basic_auth()), (400, "unauthorized_client")),
        (lambda: post(cc, auth=setup.dpop_rp.basic_auth()), (400, "invalid_dpop_proof")),
    ]


def test_both_paths_answer_alike(env: Env, make_client: Any, settings: Any) -> None:  # noqa: F811
    post_machine = make_client(
        name="Passerelle POST",
        redirect_uris=[],
        grant_types=["client_credentials"],
        scopes=["profile"],
        token_endpoint_auth_method="client_secret_post",
    )
    requests = _requests(env, post_machine)
    answers = {}
    for path in ("oauthlib", "native"):
        settings.TOKEN_ENDPOINT = path
        answers[path] = [_answer(send(), path) for send, _expected in requests]
    assert answers["native"] == answers["oauthlib"]
    assert [answer[:2] for answer in answers["native"]] == [expected for _send, expected in requests]
    # oauthlib echoes `state` in its error bodies; so do we.
    assert [answer[-1].get("state") for answer in answers["native"][8:10]] == ["xyz", "xyz"]
