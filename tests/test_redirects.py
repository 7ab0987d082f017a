"""Only same-site URLs are followed after sign-in, registration or a second factor."""

from __future__ import annotations

import pytest

from common.redirects import safe_next, with_next


@pytest.mark.parametrize(
    "value",
    [
        "https://evil.example/",
        "//evil.example/path",
        "javascript:alert(1)",
        "http://testserver.evil/",
        "",
        None,
    ],
)
def test_foreign_or_empty_next_is_refused(rf, value):
    assert safe_next(rf.get("/"), value) == ""


@pytest.mark.parametrize("value", ["/authorize?client_id=x&state=y", "/compte/", "http://testserver/compte/"])
def test_same_site_next_is_kept(rf, value):
    assert safe_next(rf.get("/"), value) == value


def test_with_next_encodes_the_target():
    assert with_next("/connexion/", "/authorize?a=1&b=2") == "/connexion/?next=%2Fauthorize%3Fa%3D1%26b%3D2"
    assert with_next("/connexion/", "") == "/connexion/"
