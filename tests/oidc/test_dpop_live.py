"""DPoP (RFC 9449) over real sockets: a real client library, and two server processes.

1. oauth4webapi (Node, tests/rp_node/dpop.mjs), a library that implements RFC 9449
   (proofs, `dpop_jkt`, nonce retries), as a public client against our provider on
   pytest-django's `live_server`: it gets bound tokens (code and refresh), retries on
   `use_dpop_nonce` by itself, and calls userinfo. Then, with that bound token, requests
   the library would not make are sent from here: without a proof, as Bearer, with another
   key, the library's own userinfo proof replayed, and proofs by the library's key (exported)
   with a wrong `htu`, a wrong `htm` or an old `iat`.
2. Two granian processes on one database, behind one issuer URL as behind a load balancer:
   a nonce issued by one is accepted by the other; once expired, refused with a fresh one.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests

from tests.connectors.conftest import database_url_of_test_db
from tests.oidc.dpop_keys import DPoPKey
from tests.oidc.test_rp_libraries import NODE_DIR, sign_in_and_consent
from tests.oidc.test_token_differential import claims_of

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
APP_REDIRECT = "https://app.example.org/callback"
GRANIAN = Path(sys.executable).parent / "granian"  # the virtualenv's, as bench/oidc.py


# --- 1. oauth4webapi ------------------------------------------------------------------------------


def node_with_oauth4webapi() -> str:
    node = shutil.which("node")
    if node and (NODE_DIR / "node_modules" / "oauth4webapi" / "package.json").exists():
        return node
    reason = "node or oauth4webapi is not installed: npm ci --prefix tests/rp_node"
    if os.environ.get("CI"):
        pytest.fail(f"{reason}; CI must run the DPoP library test (.ci/run installs it)")
    pytest.skip(reason)


@pytest.fixture
def provider(live_server: Any, settings: Any, signing_keys: Any) -> str:
    settings.ISSUER = live_server.url
    settings.OAUTH2_PROVIDER = {**settings.OAUTH2_PROVIDER, "OIDC_ISS_ENDPOINT": live_server.url}
    return live_server.url


def _send(process: subprocess.Popen, value: dict[str, Any]) -> dict[str, Any]:
    assert process.stdin is not None and process.stdout is not None
    process.stdin.write(json.dumps(value) + "\n")
    process.stdin.flush()
    line = process.stdout.readline()
    assert line, process.stderr.read() if process.stderr else ""
    answer = json.loads(line)
    assert "error" not in answer, answer
    return answer


@pytest.fixture
def library_session(provider: str, make_client: Any, make_resident: Any) -> dict[str, Any]:
    node = node_with_oauth4webapi()
    resident = make_resident("dominique.dpop@example.org", given_name="Dominique")
    app = make_client(
        name="Appli Métropole",
        public=True,
        redirect_uris=[APP_REDIRECT],
    )
    process = subprocess.Popen(  # fixed script, JSON lines on stdin/stdout
        [node, str(NODE_DIR / "dpop.mjs")],
        cwd=NODE_DIR,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        started = _send(
            process, {"issuer": provider, "client_id": app.client_id, "redirect_uri": APP_REDIRECT}
        )
        browser = sign_in_and_consent(
            provider, started["url"], email=resident.email, redirect_uri=APP_REDIRECT
        )
        result = _send(process, {"callback_url": browser["callback_url"]})
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    return {"result": result, "resident": resident, "provider": provider}


def test_library_gets_bound_tokens_and_calls_userinfo(library_session: dict[str, Any]):
    result = library_session["result"]
    # oauth4webapi hands token_type lowercased (RFC 6749 §5.1: case-insensitive).
    assert result["token_type"] == "dpop"
    assert result["refreshed_token_type"] == "dpop"
    assert claims_of(result["access_token"])["cnf"] == {"jkt": result["jkt"]}
    assert claims_of(result["refreshed_access_token"])["cnf"] == {"jkt": result["jkt"]}
    assert result["userinfo"]["email"] == library_session["resident"].email
    # Our token endpoint asked for a nonce (DPOP_NONCE_REQUIRED) and the library retried.
    assert result["nonce_retries"] >= 1


def test_bound_token_fails_without_the_right_proof(library_session: dict[str, Any]):
    provider, result = library_session["provider"], library_session["result"]
    token = result["refreshed_access_token"]
    userinfo_url = provider + "/userinfo"
    own_key = DPoPKey.from_private_jwk(result["private_jwk"])  # the library's key
    assert own_key.jkt == result["jkt"]

    def call(scheme: str, proof: str | None) -> requests.Response:
        headers = {"Authorization": f"{scheme} {token}"}
        if proof is not None:
            headers["DPoP"] = proof
        return requests.get(userinfo_url, headers=headers, timeout=20)

    nonce = call("DPoP", own_key.proof("GET", userinfo_url, token=token)).headers["DPoP-Nonce"]
    old = time.time() - 600
    cases = {
        "without a proof": ("DPoP", None, "invalid_dpop_proof"),
        "as Bearer": (
            "Bearer",
            own_key.proof("GET", userinfo_url, token=token, nonce=nonce),
            "invalid_token",
        ),
        "another key": (
            "DPoP",
            DPoPKey().proof("GET", userinfo_url, token=token, nonce=nonce),
            "invalid_dpop_proof",
        ),
        "the library's proof replayed": ("DPoP", result["userinfo_proof"], "invalid_dpop_proof"),
        "wrong htu": (
            "DPoP",
            own_key.proof("GET", provider + "/token", token=token, nonce=nonce),
            "invalid_dpop_proof",
        ),
        "wrong htm": (
            "DPoP",
            own_key.proof("POST", userinfo_url, token=token, nonce=nonce),
            "invalid_dpop_proof",
        ),
        "old iat": (
            "DPoP",
            own_key.proof("GET", userinfo_url, token=token, nonce=nonce, iat=old),
            "invalid_dpop_proof",
        ),
    }
    for case, (scheme, proof, error) in cases.items():
        response = call(scheme, proof)
        assert response.status_code == 401, case
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith("DPoP ") and f'error="{error}"' in challenge, (case, challenge)
    # The same key, the right request: accepted (the refusals above are the checks, not the key).
    response = call("DPoP", own_key.proof("GET", userinfo_url, token=token, nonce=nonce))
    assert response.status_code == 200, response.text
    assert response.json()["email"] == library_session["resident"].email


# --- 2. nonces across two web workers -----------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def two_workers(signing_keys: Any, make_client: Any, tmp_path: Path) -> dict[str, Any]:
    granian = GRANIAN
    ports = [_free_port(), _free_port()]
    issuer = f"http://127.0.0.1:{ports[0]}"  # one public URL for both, as behind a balancer
    env = {
        **{k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PYTEST_XDIST_WORKER")},
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": database_url_of_test_db(),
        "OIDC_ISSUER": issuer,
        "DPOP_NONCE_STEP_SECONDS": "3",
    }
    processes = []
    for port in ports:
        log = (tmp_path / f"granian-{port}.log").open("w")
        command = [str(granian), "--interface", "wsgi", "--workers", "1", "--no-ws", "--host", "127.0.0.1"]
        command += ["--port", str(port), "--log-level", "warning", "config.wsgi:application"]
        processes.append(subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=log))
    try:
        for port in ports:
            for _ in range(200):
                try:
                    requests.get(f"http://127.0.0.1:{port}/.well-known/openid-configuration", timeout=2)
                    break
                except requests.ConnectionError:
                    time.sleep(0.1)
            else:
                pytest.fail(f"granian on {port} did not start: {list(tmp_path.glob('*.log'))}")
        machine = make_client(
            name="Passerelle transport",
            redirect_uris=[],
            grant_types=["client_credentials"],
            scopes=["profile"],
        )
        yield {"ports": ports, "issuer": issuer, "machine": machine}
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()


def test_nonce_of_one_worker_accepted_by_the_other_and_expired_refused(two_workers: dict[str, Any]):
    first, second = (f"http://127.0.0.1:{port}/token" for port in two_workers["ports"])
    htu = two_workers["issuer"] + "/token"
    auth = two_workers["machine"].basic_auth()
    key = DPoPKey()

    def token(at: str, nonce: str | None) -> requests.Response:
        headers = {"Authorization": auth, "DPoP": key.proof("POST", htu, nonce=nonce)}
        return requests.post(at, data={"grant_type": "client_credentials"}, headers=headers, timeout=20)

    asked = token(first, None)
    assert asked.status_code == 400 and asked.json()["error"] == "use_dpop_nonce"
    nonce = asked.headers["DPoP-Nonce"]
    accepted = token(second, nonce)  # issued by the first worker, accepted by the second
    assert accepted.status_code == 200, accepted.text
    assert accepted.json()["token_type"] == "DPoP"
    # A nonce lives one to two steps (3 s here): after three it is refused, with a fresh one.
    time.sleep(9.5)
    stale = token(second, nonce)
    assert stale.status_code == 400 and stale.json()["error"] == "use_dpop_nonce"
    fresh = stale.headers["DPoP-Nonce"]
    assert fresh != nonce
    assert token(first, fresh).status_code == 200
