"""The authorization code of a request validated in this same request, without oauthlib.

django-oauth-toolkit's `create_authorization_response` builds a new oauthlib request from
the HTTP request and the credentials, validates it a second time (client, redirect URI,
response type, PKCE, scopes, resource, `dpop_jkt`, OpenID checks: what the authorization
endpoint's `_validate` decided a moment earlier in the same request), then writes the code
and puts the redirect together. `issue_validated_code` does only the last two steps, the
same way:

- the code: 30 characters drawn uniformly from oauthlib's alphabet (`[A-Za-z0-9]`) by the
  operating system's CSPRNG, as oauthlib's `generate_token()` draws them for its
  `create_authorization_code` (same length, alphabet and distribution: ~178 bits), from one
  `os.urandom` call instead of one per character (`code_token`);
- the row: the validator's own `_create_authorization_code` (the one INSERT that
  `save_authorization_code` runs, identity/oidc/token_writes.py's `insert_row`: on
  PostgreSQL its parameters bound on the server), given the values oauthlib's request would
  carry — the client, the resident, the credentials (redirect URI, PKCE challenge, nonce,
  claims, resource, `dpop_jkt`, authentication time, session, acr/amr) and the scopes
  (`tests/oidc/test_authorize_differential.py` compares the rows written both ways, column
  by column);
- the redirect: `code` then `state` (when there is one) added by oauthlib's
  `add_params_to_uri`, in the fragment only when the URL of the HTTP request itself says
  `response_mode=fragment` (what oauthlib reads: it is not part of the credentials), then
  RFC 9207's `iss` by django-oauth-toolkit's own function. For a plain registered URI
  (no query, fragment or `;` parameters, which `urlparse`/`urlunparse` give back unchanged)
  and a query response, that composition is the URI, `?`, and the three parameters
  form-encoded: written so directly (`_redirect`; the composition is the reference in
  tests/oidc/test_code_issuance.py).

For an internal service whose information page is not forced or skipped by `prompt`
(identity/oidc/internal_notice.py), the page is due when the resident's notice of the service
does not list the requested scopes. On PostgreSQL that is checked by the code's INSERT itself
(`issue_validated_code_if_noticed`: `INSERT … SELECT … WHERE EXISTS` the notice row listing
every scope, one round trip instead of the notice's read then the INSERT); when it wrote
nothing, the caller checks the page the usual way (`internal_notice_page`) and, if it is not
due after all (a notice whose scopes are separated by other whitespace than single spaces,
or one recorded meanwhile), writes the code as usual. Elsewhere the notice is read first, as
before.

Only for the authorization endpoint itself, once its checks passed in this request: the
pages that resume a request later (consent decision, internal-service notice) still go
through oauthlib, which validates the credentials they kept. Requests without the `openid`
scope (whose nonce and claims oauthlib would read from the URL rather than the
credentials) go through oauthlib too. settings.AUTHORIZE_ISSUANCE = "oauthlib" sends every
request there (the reference: tests/oidc/test_authorize_differential.py compares both).
"""

from __future__ import annotations

import os
import re
from types import SimpleNamespace
from typing import Any
from urllib.parse import urlencode, urlparse, urlunparse

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections, router
from django.http import HttpRequest
from oauth2_provider.models import get_grant_model
from oauth2_provider.oauth2_backends import _add_iss_to_redirect
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import UNICODE_ASCII_CHARACTER_SET, add_params_to_uri

from common.kept_cursor import kept_fetch
from identity.oidc.constants import PKCE_METHOD
from identity.oidc.models import InternalServiceNotice
from identity.oidc.token_writes import _insert_for, _saved, _values, insert_row

CODE_LENGTH = 30  # oauthlib's generate_token() default
_ALPHABET = UNICODE_ASCII_CHARACTER_SET  # [a-zA-Z0-9], 62 characters
# Bytes below this (the largest multiple of 62 that fits in a byte) map uniformly onto the
# alphabet by `% 62`; the others are dropped (rejection sampling: no bias).
_BYTE_LIMIT = 256 - 256 % len(_ALPHABET)


def direct_issuance(scopes: list[str], credentials: dict[str, Any]) -> bool:
    """Whether this validated request's code can be issued here rather than by oauthlib."""
    return (
        getattr(settings, "AUTHORIZE_ISSUANCE", "native") != "oauthlib"
        and "openid" in scopes
        and credentials.get("response_type") == "code"
        and credentials.get("code_challenge_method") == PKCE_METHOD
        and bool(credentials.get("code_challenge"))
    )


def _response_mode(request: HttpRequest) -> str | None:
    """`response_mode` as oauthlib's request sees it: django-oauth-toolkit hands it the URL
    (its query string, last value) and no body, so a POSTed or pushed value is not seen."""
    return request.GET.get("response_mode")


def code_token() -> str:
    """A new authorization code: what oauthlib's `generate_token()` returns (30 characters,
    each uniform over `[A-Za-z0-9]`, from the operating system's CSPRNG), drawn from one
    `os.urandom` call (oauthlib's `SystemRandom().choice` reads it once per character)."""
    chars: list[str] = []
    while True:
        for byte in os.urandom(40):  # 40 bytes give 30 accepted ones but ~1 time in 10^9
            if byte < _BYTE_LIMIT:
                chars.append(_ALPHABET[byte % 62])
                if len(chars) == CODE_LENGTH:
                    return "".join(chars)


def _code_row(
    request: HttpRequest, client: Any, code: str, scopes: list[str], credentials: dict[str, Any]
) -> Any:
    """The row the validator's own `_create_authorization_code` writes (its
    `authorization_code_row`), given what oauthlib's request would carry; not saved."""
    carried = SimpleNamespace(
        client=client,
        user=request.user,
        redirect_uri=credentials["redirect_uri"],
        scopes=scopes,
        code_challenge=credentials.get("code_challenge"),
        code_challenge_method=credentials.get("code_challenge_method"),
        nonce=credentials.get("nonce"),
        claims=credentials.get("claims"),
        auth_time=credentials.get("auth_time"),
        cum_sid=credentials.get("cum_sid"),
        cum_acr=credentials.get("cum_acr"),
        cum_amr=credentials.get("cum_amr"),
        resource=credentials.get("resource"),
        dpop_jkt=credentials.get("dpop_jkt"),
    )
    return oauth2_settings.OAUTH2_VALIDATOR_CLASS().authorization_code_row(carried, {"code": code})


def _write_code(
    request: HttpRequest, client: Any, code: str, scopes: list[str], credentials: dict[str, Any]
) -> None:
    """What the validator's own `_create_authorization_code` does (one INSERT,
    token_writes.insert_row: on PostgreSQL on the kept cursor binding its parameters on the
    server) given what oauthlib's request would carry."""
    insert_row(_code_row(request, client, code, scopes, credentials))


# A scope of this shape has no whitespace: when it is an element of the notice's scopes split
# on single spaces (string_to_array), it is one of `scopes.split()` too (internal_notice_covers'
# rule). Requested scopes are registered ones (oauthlib's validate_scopes): always this shape.
_PLAIN_SCOPE = re.compile(r"[\x21-\x7e]+")
_noticed_inserts: dict[str, str] = {}


def _noticed_insert_sql(using: str) -> str:
    """token_writes.insert_row's INSERT of the code, as an INSERT … SELECT that inserts only
    when the resident's notice of the service lists every scope (identity/oidc/internal_notice.py,
    `internal_notice_covers`); written once per process and database from the models' metadata.
    Its parameters: the row's values, then the notice's user and client, then the scopes."""
    cached = _noticed_inserts.get(using)
    if cached is None:
        quote = connections[using].ops.quote_name
        insert = _insert_for(get_grant_model(), using)
        meta = InternalServiceNotice._meta
        fields: dict[str, Any] = {name: meta.get_field(name) for name in ("user", "client", "scopes")}
        column = {name: quote(field.column) for name, field in fields.items()}
        marks = ", ".join(["%s"] * len(insert.fields))
        cached = _noticed_inserts[using] = (
            f"INSERT INTO {insert.table} ({insert.columns}) SELECT {marks} "  # noqa: S608 - metadata
            f"WHERE EXISTS (SELECT 1 FROM {quote(meta.db_table)} "
            f"WHERE {column['user']} = %s AND {column['client']} = %s "
            f"AND string_to_array({column['scopes']}, ' ') @> %s::text[]) "
            f"RETURNING {insert.pk_column}"
        )
    return cached


def _write_code_if_noticed(
    request: HttpRequest, client: Any, code: str, scopes: list[str], credentials: dict[str, Any]
) -> bool:
    """The code's row (as `_write_code` writes it) inserted only if the resident's notice of
    this internal service lists every one of `scopes`, in one statement: True when written.
    False when nothing was written: the notice does not list them by the statement's test,
    or the statement does not apply (not PostgreSQL, another database for the codes than for
    the notices, a scope of another shape); the caller then checks the notice as usual
    (`internal_notice_page`) and, when it covers the scopes after all, writes the code."""
    model = get_grant_model()
    using = router.db_for_write(model)
    connection = connections[using]
    if (
        connection.vendor != "postgresql"
        or using != DEFAULT_DB_ALIAS  # where internal_notice_covers reads
        or not all(_PLAIN_SCOPE.fullmatch(scope) for scope in scopes)
    ):
        return False
    grant = _code_row(request, client, code, scopes, credentials)
    meta = InternalServiceNotice._meta
    user_field: Any = meta.get_field("user")
    client_field: Any = meta.get_field("client")
    params = [
        *_values(_insert_for(model, using), grant, connection),
        user_field.get_db_prep_value(request.user.pk, connection),
        client_field.get_db_prep_value(client.pk, connection),
        list(scopes),
    ]
    row = kept_fetch(_noticed_insert_sql(using), params, db=connection, server_binding=True)
    if row is None:
        return False
    _saved(grant, row[0], using)
    return True


_PLAIN_URIS: dict[str, bool] = {}


def _plain_uri(uri: str) -> bool:
    """Whether `uri` has no query, fragment or `;` parameters and `urlparse`/`urlunparse`
    give it back unchanged: then adding parameters to its query is appending `?` and them.
    Remembered per URI (registered redirect URIs only: a few per client)."""
    plain = _PLAIN_URIS.get(uri)
    if plain is None:
        plain = not any(mark in uri for mark in "?#;") and urlunparse(urlparse(uri)) == uri
        if len(_PLAIN_URIS) >= 4096:
            _PLAIN_URIS.clear()
        _PLAIN_URIS[uri] = plain
    return plain


def _redirect(redirect_uri: str, items: list[tuple[str, str]], fragment: bool, issuer: str | None) -> str:
    """oauthlib's `add_params_to_uri(redirect_uri, items, fragment)`, then (when `issuer`)
    django-oauth-toolkit's `_add_iss_to_redirect`: their result, written directly when
    `redirect_uri` is plain and the response goes in the query."""
    if issuer is not None and not fragment and _plain_uri(redirect_uri):
        # add_params_to_uri: parse_qsl("") is [], so the query is urlencode(items) (oauthlib
        # encodes the pairs to UTF-8 first: the same bytes); _add_iss_to_redirect parses
        # that query back (the same pairs: none is named iss), adds iss and encodes again.
        return redirect_uri + "?" + urlencode([*items, ("iss", issuer)])
    uri = add_params_to_uri(redirect_uri, items, fragment=fragment)
    if issuer is not None:
        uri = _add_iss_to_redirect(uri, issuer)
    return uri


def issue_validated_code(
    request: HttpRequest, client: Any, scopes: list[str], credentials: dict[str, Any]
) -> str:
    """Write the code of an authorization request validated in this request; its redirect URI."""
    code = code_token()
    _write_code(request, client, code, scopes, credentials)
    return _code_redirect(request, code, credentials)


def issue_validated_code_if_noticed(
    request: HttpRequest, client: Any, scopes: list[str], credentials: dict[str, Any]
) -> str | None:
    """`issue_validated_code` for an internal service whose information page was not checked
    yet: the code written only if the resident's notice of the service lists these scopes,
    checked in the code's INSERT itself (`_write_code_if_noticed`); None when nothing was
    written (the caller then checks the notice as usual)."""
    code = code_token()
    if not _write_code_if_noticed(request, client, code, scopes, credentials):
        return None
    return _code_redirect(request, code, credentials)


def _code_redirect(request: HttpRequest, code: str, credentials: dict[str, Any]) -> str:
    items = [("code", code)]
    state = credentials.get("state")
    if state:
        items.append(("state", state))
    issuer = (
        oauth2_settings.oauth2_authorization_server_issuer(request)
        if oauth2_settings.COMPLIANT_BCP_RFC9700_AUTHZ_RESPONSE_ISS
        else None
    )
    return _redirect(credentials["redirect_uri"], items, _response_mode(request) == "fragment", issuer)
