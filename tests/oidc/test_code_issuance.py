"""identity/oidc/code_issuance.py's own pieces against what they stand for.

The whole direct issuance is compared with oauthlib's in tests/oidc/test_authorize_differential.py
(the redirect, the stored row column by column, the token exchange); here the redirect is
compared with oauthlib's `add_params_to_uri` then django-oauth-toolkit's `_add_iss_to_redirect`
on URIs and states beyond those scenarios, and the code's generation is checked against what
oauthlib's `generate_token()` gives (length, alphabet, no two alike, every character drawn).
"""

from __future__ import annotations

import string
from collections import Counter

import pytest
from oauth2_provider.oauth2_backends import _add_iss_to_redirect
from oauthlib.common import add_params_to_uri, generate_token

from identity.oidc import code_issuance

ISSUER = "https://compte.example.org"

URIS = [
    "https://rp.example.org/callback",
    "https://rp.example.org/",
    "https://rp.example.org",
    "https://rp.example.org:8443/a/b/c",
    "http://127.0.0.1:8080/cb",
    "http://localhost/cb",
    "com.example.app:/oauth2redirect",
    "com.example.app:/oauth2redirect/",
    "myapp://callback",
    "https://rp.example.org/callback?tenant=a%20b",
    "https://rp.example.org/callback?iss=forged",
    "https://rp.example.org/callback?iss=forged&x=1",
    "https://rp.example.org/callback?",
    "https://rp.example.org/callback#",
    "https://rp.example.org/callback#frag",
    "https://rp.example.org/callback#iss=x&y=2",
    "https://rp.example.org/callback;params",
    "https://rp.example.org/call%20back",
    "https://rp.example.org/callbäck",
    "https://rp.example.org/%E2%82%AC/x",
    "https://user@rp.example.org/cb",
    "https://rp.example.org//double",
    "HTTPS://RP.example.org/CB",
    "https://[::1]:8443/cb",
    "urn:ietf:wg:oauth:2.0:oob",
    "https:/rp.example.org/cb",
    "https:rp.example.org",
    "//rp.example.org/cb",
    "/relative/cb",
]

STATES = [
    None,
    "",
    "s",
    "état & co/=?+ x",
    "a=b&c=d",
    "%41%zz",
    "iss=forged",
    "€\u00a0\u2028",
    " ",
    "+",
    "x" * 300,
]


def _reference(uri: str, items: list[tuple[str, str]], fragment: bool, issuer: str | None) -> str:
    result = add_params_to_uri(uri, items, fragment=fragment)
    if issuer is not None:
        result = _add_iss_to_redirect(result, issuer)
    return result


@pytest.mark.parametrize("uri", URIS)
def test_redirect_as_oauthlib_then_iss(uri: str) -> None:
    for state in STATES:
        items = [("code", generate_token())]
        if state:
            items.append(("state", state))
        for fragment in (False, True):
            for issuer in (ISSUER, ISSUER + "/sub path?x", None):
                expected = _reference(uri, items, fragment, issuer)
                assert code_issuance._redirect(uri, items, fragment, issuer) == expected, (
                    uri,
                    state,
                    fragment,
                )


def test_plain_uris_only_take_the_short_way() -> None:
    plain = {uri for uri in URIS if code_issuance._plain_uri(uri)}
    assert "https://rp.example.org/callback" in plain
    assert "com.example.app:/oauth2redirect" in plain
    for uri in plain:
        assert not any(mark in uri for mark in "?#;")
    assert not code_issuance._plain_uri("https://rp.example.org/callback?tenant=a")
    assert not code_issuance._plain_uri("https://rp.example.org/callback#x")
    assert not code_issuance._plain_uri("https://rp.example.org/callback;p")


def test_a_state_that_cannot_be_encoded_fails_alike() -> None:
    items = [("code", "c"), ("state", "\ud800")]
    with pytest.raises(UnicodeEncodeError):
        _reference("https://rp.example.org/cb", items, False, ISSUER)
    with pytest.raises(UnicodeEncodeError):
        code_issuance._redirect("https://rp.example.org/cb", items, False, ISSUER)


def test_code_token_as_generate_token() -> None:
    alphabet = set(string.ascii_letters + string.digits)
    reference = generate_token()
    tokens = [code_issuance.code_token() for _ in range(4000)]
    assert all(len(token) == len(reference) == 30 for token in tokens)
    assert all(set(token) <= alphabet for token in tokens)
    assert len(set(tokens)) == len(tokens)
    # Uniform over the 62 characters: 120,000 draws, ~1,935 each; a bias of the `% 62`
    # kind (the first 8 characters drawn 5/4 as often) would put them near 2,400.
    counts = Counter("".join(tokens))
    assert set(counts) == alphabet
    expected = 30 * 4000 / 62
    assert all(abs(count - expected) < 0.12 * expected for count in counts.values()), counts


def test_code_token_rejects_the_bytes_beyond_the_last_multiple(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bytes 248–255 are dropped (they would favour the first 8 characters), and more bytes
    are drawn when fewer than 30 were kept."""
    draws = [bytes([255] * 20 + [0] * 20), bytes(range(248, 256)) + bytes([61] * 32)]

    def urandom(size: int) -> bytes:
        assert size == 40
        return draws.pop(0)

    monkeypatch.setattr(code_issuance.os, "urandom", urandom)
    token = code_issuance.code_token()
    assert token == "a" * 20 + "9" * 10
    assert draws == []
