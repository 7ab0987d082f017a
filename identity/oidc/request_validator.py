"""Our request validator: django-oauth-toolkit's, corrected where the specs require it."""

from __future__ import annotations

import contextlib
import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import router, transaction
from django.utils import timezone
from jwcrypto import jwk, jws
from jwcrypto.common import JWException
from oauth2_provider.models import (
    get_access_token_model,
    get_grant_model,
    get_id_token_model,
    get_refresh_token_model,
    refresh_token_expire_timedelta,
)
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors
from oauthlib.oauth2.rfc6749.utils import scope_to_list

from common import request_log
from common.crypto import keyed_hash_matches
from identity.client_cache import client_cache_generation, client_cache_get, client_cache_put
from identity.keys import verification_key
from identity.models import SessionClient
from identity.oidc.access_tokens import decode, is_client_token
from identity.oidc.access_tokens import sign as sign_jwt
from identity.oidc.claims import standard_claims
from identity.oidc.client_auth import (
    asserted_client,
    method_used,
)
from identity.oidc.dpop import JKT_HEADER
from identity.oidc.models import RevokedAccessToken
from identity.oidc.refresh_policy import public_refresh_idle_error
from identity.oidc.resources import unknown_targets
from identity.oidc.session_tokens import session_tokens_revoke
from identity.oidc.sharing import released_claims
from identity.oidc.token_rows import claimed_code_row, code_row, refresh_token_row
from identity.oidc.token_writes import IssuedRows, claim_code, insert_row, write_tokens
from identity.sessions import browser_session_by_sid, session_client_record, session_client_settle

if TYPE_CHECKING:
    from oauthlib.common import Request

    from identity.oidc.models import RefreshToken
    from identity.sessions import BrowserSession

    class OAuthRequest(Request):
        """oauthlib's request as this validator's methods see it (for the type checker only).

        oauthlib, django-oauth-toolkit and this module attach attributes to the request
        from one step to the next; they are declared here. `client` and `user` are
        django-oauth-toolkit's model and our User (Any: mypy cannot see its models), set
        by oauthlib before the methods that read them; `code` and `scopes` likewise.
        """

        client: Any
        user: Any
        code: str
        scopes: list[str]
        # RFC 8707 targets: the authorization request's (then the code's), or the access
        # token's; the refresh token's (validate_*_resource).
        resource: list[Any]
        cum_grant_resource: list[Any]
        # How and when the resident authenticated: carried from the code or refresh token.
        auth_time: datetime | None
        cum_sid: str
        cum_acr: str
        cum_amr: list[str]
        cum_session: BrowserSession
        refresh_token_instance: RefreshToken  # django-oauth-toolkit's, set on validation
        oauth2_error: dict[str, str]  # django-oauth-toolkit's, read by its views
        # oauthlib's (set by its grant types and token handler, or identity/oidc/token_endpoint.py).
        expires_in: int
        using_default_redirect_uri: bool
        extra_credentials: dict[str, Any] | None
        id_token: Any  # django-oauth-toolkit's ID token row
        # Rows read once per request and kept for the checks that follow.
        _cum_code_row: tuple[str, Any, BrowserSession | None]  # code, row, its session
        _cum_code_family: uuid.UUID
        _cum_grant: tuple[str, str, Any]
        _cum_token_family: uuid.UUID | None
        _cum_issued_id_token: tuple[str, Any]
        # RFC 9449: the thumbprint of the DPoP key this token request's tokens are bound to.
        cum_dpop_jkt: str | None
        dpop_jkt: str  # the authorization request's `dpop_jkt` (credentials)
else:
    from oauthlib.common import Request as OAuthRequest

log = logging.getLogger(__name__)

MAX_RESOURCES = 10  # RFC 8707 `resource` values in one request
_JKT_LENGTH = 43  # base64url of a SHA-256 (RFC 7638 thumbprint)
_B64URL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def _dpop_refused(description: str, request: OAuthRequest) -> oauth2_errors.OAuth2Error:
    """RFC 9449 §5: 400 invalid_dpop_proof at the token endpoint."""
    return oauth2_errors.CustomOAuth2Error(
        error="invalid_dpop_proof", description=description, status_code=400, request=request
    )


def _as_utc(value: datetime | None) -> datetime:
    value = value or timezone.now()
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class _InvalidGrantAfterValidation(oauth2_errors.InvalidGrantError):
    """invalid_grant raised while saving the tokens (save_bearer_token), after oauthlib's
    validation: oauthlib adds the token endpoint's JSON headers only to errors raised while
    validating, so this one carries them itself."""

    @property
    def headers(self) -> dict[str, str]:
        return {"Content-Type": "application/json", "Cache-Control": "no-store", "Pragma": "no-cache"}


class Validator(OAuth2Validator):
    # --- client authentication ---------------------------------------------------------
    def _check_secret(self, provided_secret: str, stored_secret: str) -> bool:
        # Keyed fast hash only: a plaintext or password-hasher value never matches.
        return keyed_hash_matches(provided_secret or "", stored_secret or "")

    def _load_application(self, client_id: str, request: OAuthRequest) -> Any:
        # The client row is read by nearly every protocol request: served from the
        # in-process cache (identity/client_cache.py: changes on this process take effect
        # at once, on other processes within its TTL). Misses go to django-oauth-toolkit.

        if isinstance(client_id, str) and "\x00" in client_id:
            # No client_id holds a NUL: PostgreSQL would refuse the lookup with a DataError
            # (a 500), which django-oauth-toolkit does not catch (it expects a ValueError).
            return None
        current = getattr(request, "client", None)
        if current is not None and getattr(current, "client_id", None) == client_id:
            return super()._load_application(client_id, request)  # its own reuse checks
        cached = client_cache_get(client_id) if isinstance(client_id, str) else None
        if cached is not None and cached.is_usable(request):
            request.client = cached
            return cached
        generation = client_cache_generation()
        client = super()._load_application(client_id, request)
        if client is not None:
            client_cache_put(client, generation=generation)
        return client

    def client_authentication_required(self, request: OAuthRequest, *args: Any, **kwargs: Any) -> bool:
        if getattr(request, "client_assertion", None) or getattr(request, "client_assertion_type", None):
            return True
        return bool(super().client_authentication_required(request, *args, **kwargs))

    def authenticate_client(self, request: OAuthRequest, *args: Any, **kwargs: Any) -> bool:
        authenticated = self._client_authenticated(request)
        if authenticated:
            request_log.set_client_id(request.client.client_id)  # the request's access line
        return authenticated

    def authenticate_client_id(
        self, client_id: str | None, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> bool:
        identified = bool(super().authenticate_client_id(client_id, request, *args, **kwargs))
        if identified:
            request_log.set_client_id(request.client.client_id)
        return identified

    def _client_authenticated(self, request: OAuthRequest) -> bool:
        """Exactly one method, and the one registered for the client (identity/oidc/client_auth.py)."""
        used = method_used(request, basic_auth=bool(self._extract_basic_auth(request)))
        if not used:  # none presented, or several at once (RFC 6749 §2.3)
            return False
        if used == "private_key_jwt":
            asserted = asserted_client(
                request, request.client_id, lambda client_id: self._load_application(client_id, request)
            )
            if asserted is None:
                return False
            request.client_id = asserted[0]
            return True
        if used == "client_secret_basic":
            authenticated = self._authenticate_basic_auth(request)
            if authenticated and request.client_id and request.client_id != request.client.client_id:
                # A body client_id naming another client than the Basic credentials: refused
                # (oauthlib would answer server_error, a 500).
                return False
        else:
            authenticated = self._authenticate_request_body(request)
        return bool(authenticated) and request.client.token_endpoint_auth_method == used

    # --- scopes: only what the operator registered for this client ---------------------
    def validate_scopes(
        self, client_id: str, scopes: list[str], client: Any, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> bool:
        return set(scopes).issubset(set(client.scope_list))

    def get_default_scopes(
        self, client_id: str, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> list[str]:
        return (
            [scope for scope in request.client.scope_list if scope != "openid"]
            if request.grant_type == "client_credentials"
            else ["openid"]
        )

    # --- prompt=none: decided by our authorization view, which knows the session ----------
    def validate_silent_login(self, request: OAuthRequest) -> bool:
        return True

    def validate_silent_authorization(self, request: OAuthRequest) -> bool:
        return True

    def validate_user_match(
        self, id_token_hint: str, scopes: Any, claims: Any, request: OAuthRequest
    ) -> bool:
        return True

    # --- authorization codes: hashed at rest, carry the authentication time ----------------
    def _create_authorization_code(
        self, request: OAuthRequest, code: dict[str, str], expires: Any = None
    ) -> Any:
        # One plain INSERT, as objects.create() writes it (identity/oidc/token_writes.py).
        return insert_row(self.authorization_code_row(request, code, expires))

    def authorization_code_row(self, request: OAuthRequest, code: dict[str, str], expires: Any = None) -> Any:
        """The code's row as `_create_authorization_code` writes it, not saved yet (also
        written by identity/oidc/code_issuance.py, with the notice check of an internal
        service in the same statement)."""
        expires = expires or timezone.now() + timedelta(
            seconds=oauth2_settings.AUTHORIZATION_CODE_EXPIRE_SECONDS
        )
        return get_grant_model()(
            application=request.client,
            user=request.user,
            code=code["code"],
            expires=expires,
            redirect_uri=request.redirect_uri,
            scope=" ".join(request.scopes),
            code_challenge=request.code_challenge or "",
            code_challenge_method=request.code_challenge_method or "",
            nonce=request.nonce or "",
            claims=json.dumps(request.claims or {}),
            auth_time=getattr(request, "auth_time", None),
            sid=getattr(request, "cum_sid", "") or "",
            acr=getattr(request, "cum_acr", "") or "",
            amr=list(getattr(request, "cum_amr", None) or []),
            resource=list(getattr(request, "resource", None) or []),  # validate_authorization_resource
            dpop_jkt=getattr(request, "dpop_jkt", None) or "",  # validate_authorization_dpop_jkt
        )

    def _code_row(self, code: str, request: OAuthRequest) -> Any:
        """The authorization-code row for `code`, with its user, whichever client it is for.

        Read once per token request: oauthlib asks for its scopes first (to route OpenID
        requests), then validate_code, the PKCE, redirect-URI and nonce checks and the
        tokens' `resource` need the same row. Callers check the client themselves.
        """
        memo = getattr(request, "_cum_code_row", None)
        if memo is not None and memo[0] == code:
            return memo[1]
        # One statement: the code, its resident and the browser session it was issued in.
        found = code_row(code)
        grant = found.row if found is not None else None
        request._cum_code_row = (code, grant, found.session if found is not None else None)
        return grant

    def get_authorization_code_scopes(
        self, client_id: str, code: str, redirect_uri: str, request: OAuthRequest
    ) -> list[str]:
        grant = self._code_row(code, request)
        return scope_to_list(grant.scope) if grant is not None and grant.scope else []

    def validate_code(
        self, client_id: str, code: str, client: Any, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> bool:
        # RFC 6749 §4.1.2: a code is used once; a second use is refused and the tokens
        # issued from the first use are revoked. The row is kept (marked redeemed) rather
        # than deleted so that the replay can be recognised. Claimed atomically here, so
        # two concurrent redemptions cannot both obtain tokens. The token family the
        # redemption will issue is chosen now and recorded with the claim, in the same
        # UPDATE: a replay finds it even before those tokens exist (and then has nothing
        # to revoke yet, as before, when the family was recorded after issuing).
        family = uuid.uuid4()
        memo = getattr(request, "_cum_code_row", None)
        if memo is None or memo[0] != code:
            # Not read yet (our token endpoint): claim first, reading the row with the
            # claim (one statement on PostgreSQL, identity/oidc/token_rows.py); the code
            # is read on its own only when nothing was claimed, to tell a replay apart.
            if client is None:
                return False
            claimed = claimed_code_row(code, client.pk, family)
            if claimed is None:
                self._code_replayed(self._code_row(code, request), client)
                return False
            grant = claimed.row
            request._cum_code_row = (code, grant, claimed.session)
        else:
            # Read already (oauthlib's path asks the code's scopes first): check, then claim.
            grant = memo[1]
            if grant is None or client is None or grant.application_id != client.pk:
                return False  # unknown, or another client's code: untouched
            if not claim_code(grant, family):  # one conditional UPDATE (identity/oidc/token_writes.py)
                rows = get_grant_model().objects.filter(pk=grant.pk)
                previous = rows.values_list("token_family", flat=True).first()
                if previous:
                    get_refresh_token_model().revoke_family(previous)
                return False
        request._cum_code_family = family
        if grant.is_expired() or not grant.user.is_active:
            return False
        if grant.sid:
            session = request._cum_code_row[2]  # read with the code (_code_row)
            if session is None or session.ended_at is not None:
                # The resident signed out (or the session was revoked) since authorizing.
                return False
            request.cum_session = session  # read again for the ID token claims
        request.scopes = grant.scope.split(" ")
        request.user = grant.user
        request.auth_time = grant.auth_time
        request.cum_sid = grant.sid
        request.cum_acr = grant.acr
        request.cum_amr = list(grant.amr or [])
        if grant.nonce:
            request.nonce = grant.nonce
        if grant.claims:
            request.claims = json.loads(grant.claims)
        # The PKCE, redirect-URI and nonce checks that follow read this same row: keep it
        # (only for this code and this client) instead of selecting it again each time.
        request._cum_grant = (code, client.client_id, grant)
        return True

    @staticmethod
    def _code_replayed(grant: Any, client: Any) -> None:
        """A code whose claim failed, read after the claim: if it is this client's, it was
        redeemed before, and the token family of that redemption is revoked (RFC 6749
        §4.1.2). Unknown, or another client's code: nothing happens."""
        if grant is None or grant.application_id != client.pk:
            return
        if grant.token_family:
            get_refresh_token_model().revoke_family(grant.token_family)

    def _redeemed_grant(self, code: str, request: OAuthRequest) -> Any:
        """The row validate_code read for `code` in this request, else this client's row."""
        memo = getattr(request, "_cum_grant", None)
        client = request.client
        if memo is not None and client is not None and memo[:2] == (code, client.client_id):
            return memo[2]
        grant = self._code_row(code, request)
        if grant is None or client is None or grant.application_id != client.pk:
            return None
        return grant

    def get_code_challenge(self, code: str, request: OAuthRequest) -> str | None:
        grant = self._redeemed_grant(code, request)
        if grant is None:
            raise get_grant_model().DoesNotExist
        return grant.code_challenge or None

    def get_code_challenge_method(self, code: str, request: OAuthRequest) -> str | None:
        grant = self._redeemed_grant(code, request)
        if grant is None:
            raise get_grant_model().DoesNotExist
        return grant.code_challenge_method or None

    def get_authorization_code_nonce(
        self, client_id: str, code: str, redirect_uri: str, request: OAuthRequest
    ) -> str | None:
        grant = self._redeemed_grant(code, request)
        return (grant.nonce or None) if grant is not None else None

    def invalidate_authorization_code(
        self, client_id: str, code: str, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> None:
        # Already marked redeemed by validate_code, which also recorded the token family
        # the refresh token was issued in: only a family chosen otherwise is written here.
        family = getattr(request, "_cum_token_family", None)
        if family and family != getattr(request, "_cum_code_family", None):
            get_grant_model().objects.filter(code=code, application=request.client).update(
                token_family=family
            )

    def confirm_redirect_uri(
        self,
        client_id: str,
        code: str,
        redirect_uri: str,
        client: Any,
        request: OAuthRequest,
        *args: Any,
        **kwargs: Any,
    ) -> bool:
        # RFC 6749 §4.1.3 / §5.2: the redirect_uri must be present (our authorization
        # endpoint always requires it) and identical; a mismatch is invalid_grant, where
        # oauthlib would answer invalid_request.
        if getattr(request, "using_default_redirect_uri", False):
            raise oauth2_errors.InvalidRequestError(
                description="redirect_uri is required: it was part of the authorization request.",
                request=request,
            )
        grant = self._redeemed_grant(code, request) if client is request.client else None
        if grant is None:
            grant = get_grant_model().objects.filter(code=code, application=client).first()
        if grant is None or not grant.redirect_uri_allowed(redirect_uri):
            raise oauth2_errors.InvalidGrantError(
                description="redirect_uri does not match the authorization request.", request=request
            )
        return True

    # --- tokens carry the browser session (sid) and the original authentication time ------
    # django-oauth-toolkit's constructors, with our columns set before the INSERT.
    def _issued_id_token_row(self, token: dict[str, Any], request: OAuthRequest) -> Any:
        """The ID-token row of `token["id_token"]`, saved (in the caller's transaction).

        finalize_id_token built the row for the very token it signed and left the INSERT
        to the transaction that issues the access token pointing at it: no row for an
        ID token that was never handed out, no re-verification or re-SELECT of our own
        token (_load_id_token). Any other ID token string is looked up as usual.
        """
        id_token = token.get("id_token")
        if not id_token:
            return None
        issued = getattr(request, "_cum_issued_id_token", None)
        if not issued or issued[0] != id_token:
            return self._load_id_token(id_token)
        row = issued[1]
        if row.pk is None:
            row.save(force_insert=True)
        return row

    def _create_access_token(
        self, expires: Any, request: OAuthRequest, token: dict[str, Any], source_refresh_token: Any = None
    ) -> Any:
        access_token = self._new_access_token(
            expires, request, token, self._issued_id_token_row(token, request), source_refresh_token
        )
        access_token.save(force_insert=True)
        return access_token

    def _new_access_token(
        self,
        expires: Any,
        request: OAuthRequest,
        token: dict[str, Any],
        id_token: Any,
        source_refresh_token: Any,
    ) -> Any:
        """The access-token row of `token`, not saved (_create_access_token, save_bearer_token)."""
        access_token = get_access_token_model()(
            user=request.user,
            scope=token["scope"],
            expires=expires,
            id_token=id_token,
            application=request.client,
            source_refresh_token=source_refresh_token,
            resource=getattr(request, "resource", []),
            sid=getattr(request, "cum_sid", "") or "",
            claims_request=request.claims if isinstance(request.claims, dict) else None,
        )
        self._set_token_value(access_token, token["access_token"])
        return access_token

    def _create_refresh_token(
        self, request: OAuthRequest, refresh_token_code: str, access_token: Any, previous_refresh_token: Any
    ) -> Any:
        refresh_token = self._new_refresh_token(
            request, refresh_token_code, access_token, previous_refresh_token
        )
        refresh_token.save(force_insert=True)
        request._cum_token_family = refresh_token.token_family
        return refresh_token

    def _new_refresh_token(
        self, request: OAuthRequest, refresh_token_code: str, access_token: Any, previous_refresh_token: Any
    ) -> Any:
        """The refresh-token row, not saved (_create_refresh_token, save_bearer_token)."""
        if previous_refresh_token:
            family = previous_refresh_token.token_family
        else:
            # A code redemption: the family validate_code recorded on the code.
            family = getattr(request, "_cum_code_family", None) or uuid.uuid4()
        refresh_token = get_refresh_token_model()(
            user=request.user,
            application=request.client,
            access_token=access_token,
            token_family=family,
            # RFC 8707 §2.2: the resources of the grant, which later requests may narrow again.
            resource=list(getattr(request, "cum_grant_resource", None) or []),
            auth_time=getattr(request, "auth_time", None),
            sid=getattr(request, "cum_sid", "") or "",
            claims_request=request.claims if isinstance(request.claims, dict) else None,
            acr=getattr(request, "cum_acr", "") or "",
            amr=list(getattr(request, "cum_amr", None) or []),
            dpop_jkt=self._refresh_token_jkt(request, previous_refresh_token),
        )
        self._set_token_value(refresh_token, refresh_token_code)
        return refresh_token

    @staticmethod
    def _refresh_token_jkt(request: OAuthRequest, previous_refresh_token: Any) -> str:
        """RFC 9449 §5: a public client's refresh token is bound to the key of the request
        that started its family (and stays so when rotated); a confidential client's is not
        (it authenticates itself)."""
        if previous_refresh_token is not None:
            return str(previous_refresh_token.dpop_jkt or "")
        if request.client.client_type != request.client.CLIENT_PUBLIC:
            return ""
        return getattr(request, "cum_dpop_jkt", None) or ""

    def save_bearer_token(
        self, token: dict[str, Any], request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> Any:
        if request.grant_type == "client_credentials":
            # A self-contained JWT for the client itself (identity/oidc/access_tokens.py):
            # nothing is stored; RFC 7009 revocation records its jti instead.
            request.user = None
            return None
        # A code redemption, or a refresh under strict rotation, takes the lean path below;
        # anything else (other rotation settings) django-oauth-toolkit's.
        previous = None
        if request.grant_type == "refresh_token":
            if self._strict_rotation(request):
                previous = getattr(request, "refresh_token_instance", None)
            lean = previous is not None
        else:
            lean = request.grant_type == "authorization_code"
        lean = lean and bool(token.get("refresh_token"))
        using = router.db_for_write(get_access_token_model())
        if not lean:
            # django-oauth-toolkit's bookkeeping, in one transaction with the session record.
            with transaction.atomic(using=using):
                self._issued_id_token_row(token, request)
                self._save_bearer_token(token, request, *args, **kwargs)
                self._record_session_issue(request)
            return None

        # A code redemption, or a refresh with rotation: a new access and refresh token,
        # the presented refresh token (if any) revoked in the same transaction.
        if "scope" not in token:
            raise oauth2_errors.FatalClientError("Failed to renew access token: missing scope")
        # request.resource (this access token's) and cum_grant_resource (the refresh
        # token's) were settled by validate_token_resource, before the token was signed.
        expires = timezone.now() + timedelta(
            seconds=token.get("expires_in", oauth2_settings.ACCESS_TOKEN_EXPIRE_SECONDS)
        )
        # The rows, built as the ORM path builds them, written by identity/oidc/token_writes.py:
        # the claim of the presented refresh token (a conditional UPDATE) and the DELETE of
        # its access token, then the ID-token, access-token and refresh-token INSERTs (one
        # statement on PostgreSQL), nothing written if the claim fails.
        new_id_token = id_token_row = None
        if token.get("id_token"):
            issued = getattr(request, "_cum_issued_id_token", None)
            if issued and issued[0] == token["id_token"] and issued[1].pk is None:
                new_id_token = issued[1]  # finalize_id_token's row, INSERTed with the tokens
            else:
                id_token_row = self._issued_id_token_row(token, request)  # another one: looked up
        access_token = self._new_access_token(expires, request, token, new_id_token or id_token_row, previous)
        rows = IssuedRows(
            access_token=access_token,
            refresh_token=self._new_refresh_token(request, token["refresh_token"], access_token, previous),
            id_token=new_id_token,
            previous=previous,
            # The session record, written by the same statement where it can be.
            session_sid=self._session_to_note(request),
            session_client=request.client,
        )
        replayed = False
        with transaction.atomic(using=using):
            if not write_tokens(rows):
                # Rotated by a concurrent request since validate_refresh_token read it:
                # the same reuse as presenting it again afterwards (nothing written here).
                replayed = True
            else:
                request._cum_token_family = rows.refresh_token.token_family
                self._record_session_issue(request, found=rows.session_found)
        if replayed:
            assert previous is not None  # only a presented refresh token can be replayed
            if oauth2_settings.REFRESH_TOKEN_REUSE_PROTECTION and previous.token_family:
                get_refresh_token_model().revoke_family(previous.token_family)
            raise _InvalidGrantAfterValidation(request=request)
        return None

    @staticmethod
    def _session_to_note(request: OAuthRequest) -> str:
        """The sid of the browser session the tokens are noted on, or "" (none)."""
        sid = getattr(request, "cum_sid", "") or ""
        return sid if request.user is not None else ""

    def _record_session_issue(
        self, request: OAuthRequest, found: tuple[Any, Any, bool] | None = None
    ) -> None:
        """Tell the browser session these tokens were issued to this client (in the caller's
        transaction); if the session ended meanwhile, they die with it. `found`: the session's
        lock and note already done by the tokens' write statement (token_writes.IssuedRows)."""
        sid = self._session_to_note(request)
        if not sid:
            return
        if found is not None:
            live = session_client_settle(
                found=found, client=request.client, using=router.db_for_write(SessionClient)
            )
        else:
            live = session_client_record(sid=sid, client=request.client)
        if not live:
            session_tokens_revoke(sid=sid)

    # --- RFC 8707 resource indicators (identity/oidc/resources.py) ---------------------------
    # Registered as oauthlib custom validators by identity/oidc/server.py.
    @staticmethod
    def _requested_resources(request: OAuthRequest) -> list[Any]:
        """Every `resource` value of the request (repeatable, RFC 8707 §2), in order, once each.

        oauthlib keeps only the last value of a repeated parameter: the others are read from
        the body and the query. A list is what validate_authorization_resource settled when
        the authorization request was checked (carried in the credentials since).
        """
        value = getattr(request, "resource", None)
        if isinstance(value, list | tuple):
            values = list(value)
        else:
            body = getattr(request, "decoded_body", None) or []
            values = [item for key, item in body if key == "resource"]
            with contextlib.suppress(ValueError):  # a query oauthlib cannot parse strictly
                values += [item for key, item in request.uri_query_params if key == "resource"]
            if not values and isinstance(value, str):
                values = [value]
        unique: list[Any] = []
        for item in values:
            if item not in unique:
                unique.append(item)
        return unique

    @staticmethod
    def _check_targets(resources: list[Any], request: OAuthRequest) -> None:
        if len(resources) > MAX_RESOURCES or unknown_targets(resources):
            raise oauth2_errors.CustomOAuth2Error(
                error="invalid_target",
                description=(
                    "Unknown resource: ask for our issuer or the identifier of a registered "
                    f"resource server, as an absolute URI, exactly (at most {MAX_RESOURCES})."
                ),
                request=request,
            )

    def validate_authorization_resource(self, request: OAuthRequest) -> dict[str, Any]:
        """oauthlib post_auth validator: `resource` of an authorization request (or PAR).

        Unknown or malformed: invalid_target, redirected to the client. The resources asked
        become the credentials' (kept across sign-in and consent) and then the code's.
        """
        requested = self._requested_resources(request)
        self._check_targets(requested, request)
        request.resource = requested
        return {"resource": requested}

    # --- DPoP (RFC 9449; identity/oidc/dpop.py) ------------------------------------------------
    def validate_authorization_dpop_jkt(self, request: OAuthRequest) -> dict[str, Any]:
        """oauthlib post_auth validator: `dpop_jkt` of an authorization request or PAR (§10).

        At most one, a SHA-256 JWK thumbprint in base64url; kept on the code, which is then
        exchanged only with a proof by that key (validate_token_dpop).
        """
        kept = vars(request).get("dpop_jkt")  # the credentials' (the request resumed)
        if isinstance(kept, str):
            return {"dpop_jkt": kept} if kept else {}
        body = getattr(request, "decoded_body", None) or []
        values = [item for key, item in body if key == "dpop_jkt"]
        with contextlib.suppress(ValueError):
            values += [item for key, item in request.uri_query_params if key == "dpop_jkt"]
        if not values:
            return {}
        value = values[0]
        if len(values) > 1 or len(value) != _JKT_LENGTH or not set(value) <= _B64URL:
            raise oauth2_errors.InvalidRequestError(
                description="dpop_jkt must be one base64url SHA-256 JWK thumbprint (RFC 9449 §10).",
                request=request,
            )
        request.dpop_jkt = value
        return {"dpop_jkt": value}

    def validate_token_dpop(self, request: OAuthRequest) -> None:
        """oauthlib post_token validator, after validate_token_resource (both token paths).

        The token view verified the request's DPoP proof, if any, and passed its key's
        thumbprint. Refused with invalid_dpop_proof: a code bound by `dpop_jkt` or a bound
        refresh token without a proof by that key (a bound refresh token presented otherwise
        is misuse: its family is revoked, as for a replay), and a client registered with
        `dpop_bound_access_tokens` without a proof. Otherwise the tokens issued are bound
        to that key: `cnf.jkt` in the access token, `token_type: DPoP`.
        """
        jkt = request.headers.get(JKT_HEADER) or None
        if request.grant_type == "authorization_code":
            grant = self._redeemed_grant(request.code, request)
            bound = grant.dpop_jkt if grant is not None else ""
            if bound and jkt != bound:
                raise _dpop_refused(
                    "This code was bound to a DPoP key (dpop_jkt): send a proof made with it.", request
                )
        elif request.grant_type == "refresh_token":
            previous = getattr(request, "refresh_token_instance", None)
            bound = previous.dpop_jkt if previous is not None else ""
            if previous is not None and bound and jkt != bound:
                if oauth2_settings.REFRESH_TOKEN_REUSE_PROTECTION and previous.token_family:
                    get_refresh_token_model().revoke_family(previous.token_family)
                raise _dpop_refused(
                    "This refresh token is bound to a DPoP key: send a proof made with it.", request
                )
        if jkt is None and request.client.dpop_bound_access_tokens:
            raise _dpop_refused("This client must send a DPoP proof (dpop_bound_access_tokens).", request)
        request.cum_dpop_jkt = jkt
        if jkt:
            request.extra_credentials = {**(request.extra_credentials or {}), "token_type": "DPoP"}

    def validate_token_resource(self, request: OAuthRequest) -> dict[str, Any]:
        """oauthlib post_token validator (after client authentication and the grant's checks).

        Settles, before the access token is signed, `request.resource` (the token's
        audience; none: our issuer) and `request.cum_grant_resource` (what the refresh token
        keeps, RFC 8707 §2.2):
        - a code whose authorization request named resources, or a refresh token: the
          requested resources must be among those granted (a refresh token granted none is
          for us only); none requested means all granted;
        - a code without resources, and client credentials: any target may be asked.
        Every resulting target must be known now (a resource server removed since: refused).
        """
        requested = self._requested_resources(request)
        restricted = True
        if request.grant_type == "authorization_code":
            grant = self._redeemed_grant(request.code, request)
            granted = list((grant.resource if grant is not None else None) or [])
            restricted = bool(granted)
        elif request.grant_type == "refresh_token":
            previous = getattr(request, "refresh_token_instance", None)
            granted = list((previous.resource if previous is not None else None) or [])
        else:
            granted, restricted = [], False
        if restricted:
            allowed = granted or [settings.ISSUER]
            if any(uri not in allowed for uri in requested):
                raise oauth2_errors.CustomOAuth2Error(
                    error="invalid_target",
                    description="A requested resource was not part of the original grant.",
                    request=request,
                )
            resources, kept = requested or granted, granted
        else:
            resources = kept = requested
        self._check_targets(resources, request)
        request.resource = resources
        request.cum_grant_resource = kept
        return {}

    def _strict_rotation(self, request: OAuthRequest) -> bool:
        """Our posture: every refresh rotates, and a rotated token is never honoured again
        (no grace period). Other settings go through django-oauth-toolkit's own paths."""
        return (
            bool(self.rotate_refresh_token(request))
            and not oauth2_settings.REFRESH_TOKEN_GRACE_PERIOD_SECONDS
        )

    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> bool:
        if self._strict_rotation(request):
            valid = self._validate_rotating_refresh_token(refresh_token, client, request)
        else:
            valid = super().validate_refresh_token(refresh_token, client, request, *args, **kwargs)
        if valid:
            if not request.user.is_active:
                return False
            previous = request.refresh_token_instance
            idle_error = public_refresh_idle_error(
                client=client, refresh_token=previous, sender_constrained=bool(previous.dpop_jkt)
            )
            if idle_error:
                raise oauth2_errors.InvalidGrantError(description=idle_error, request=request)
            request.auth_time = previous.auth_time
            request.cum_sid = previous.sid
            request.cum_acr = previous.acr
            request.cum_amr = list(previous.amr or [])
            if previous.claims_request:
                request.claims = previous.claims_request
        return valid

    def _validate_rotating_refresh_token(
        self, refresh_token: str, client: Any, request: OAuthRequest
    ) -> bool:
        """django-oauth-toolkit's validate_refresh_token, for strict rotation, in one SELECT.

        The row is not locked here: save_bearer_token claims it with one conditional
        UPDATE (RefreshToken.revoke) in the transaction that issues its successor.
        """
        # One statement: the token (the live row if several share its checksum, else the
        # most recently revoked), its access token's expiry and scope, the resident, and
        # the browser session the ID token's sid, acr and amr come from.
        found = refresh_token_row(refresh_token)
        if found is None:
            return False
        rt = found.row
        if rt.revoked is not None:
            # Rotated or revoked: presenting it again is a replay (RFC 9700 §4.14.2). Without
            # a grace period the whole family goes, whichever client presents it.
            if oauth2_settings.REFRESH_TOKEN_REUSE_PROTECTION and rt.token_family:
                get_refresh_token_model().revoke_family(rt.token_family)
            return False
        # A live token always has its access token; without one (deleted out of band)
        # there is nothing to refresh. Expiry slides with the access token.
        access_token = rt.access_token
        if access_token is None:
            return False
        lifetime = refresh_token_expire_timedelta()
        if lifetime and access_token.expires + lifetime <= timezone.now():
            return False
        request.user = rt.user
        # The raw token presented (the stored column is blank: hashed at rest).
        request.refresh_token = refresh_token
        request.refresh_token_instance = rt
        if found.session is not None:
            request.cum_session = found.session  # for the ID token (get_id_token_dictionary)
        return client is not None and rt.application_id == client.pk

    # --- revocation (RFC 7009) ---------------------------------------------------------------
    def revoke_token(
        self, token: str, token_type_hint: str | None, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> None:
        # Rows first (resident access tokens, refresh tokens), limited to this client.
        super().revoke_token(token, token_type_hint, request, *args, **kwargs)

        claims = decode(token)
        client = request.client
        if claims is None or not is_client_token(claims) or client is None:
            return
        if claims["client_id"] != client.client_id:
            return  # RFC 7009 §2.1: only the client the token was issued to may revoke it
        now = timezone.now()
        RevokedAccessToken.objects.filter(expires_at__lte=now).delete()
        RevokedAccessToken.objects.get_or_create(
            jti=claims["jti"][:64],
            defaults={
                "client_id": client.client_id,
                "expires_at": datetime.fromtimestamp(claims["exp"], tz=UTC),
            },
        )

    # --- access tokens at resource endpoints -------------------------------------------------
    def validate_bearer_token(self, token: str, scopes: list[str], request: OAuthRequest) -> bool:
        """Never used to accept a token: no resource endpoint goes through oauthlib.

        Userinfo and introspection check our JWT access tokens themselves
        (identity/oidc/access_tokens.live_token: revocation, deactivation, machine tokens
        that have no row). django-oauth-toolkit's check knows none of that, so a view wired
        to it later fails closed instead of half-checking.
        """
        request.oauth2_error = {"error": "invalid_token", "error_description": "The access token is invalid."}
        return False

    # --- claims and ID tokens ---------------------------------------------------------------
    def get_additional_claims(self, request: OAuthRequest) -> dict[str, Any]:
        return standard_claims(request.user)

    def get_oidc_claims(self, token: Any, token_handler: Any, request: OAuthRequest) -> dict[str, Any]:
        # identity/oidc/sharing.py: `sub`, then only what the scopes cover and the ledger allows now.

        return released_claims(request.client, request.user, request.scopes or [])

    def get_id_token_dictionary(self, token: Any, token_handler: Any, request: OAuthRequest) -> Any:
        # django-oauth-toolkit's (the released claims, then iss, exp, auth_time and jti, in
        # that order), written out: its `exp` goes through Django's date formatting
        # (dateformat "U", which is int(timestamp())) and its `auth_time` is replaced here
        # by the authentication the code or refresh token carries.
        claims = self.get_oidc_claims(token, token_handler, request)
        expiration_time = timezone.now() + timedelta(seconds=oauth2_settings.ID_TOKEN_EXPIRE_SECONDS)
        claims["iss"] = self.get_oidc_issuer_endpoint(request)
        claims["exp"] = int(expiration_time.timestamp())
        claims["auth_time"] = int(
            _as_utc(getattr(request, "auth_time", None) or request.user.last_login).timestamp()
        )
        claims["jti"] = str(uuid.uuid4())
        session = getattr(request, "cum_session", None) or browser_session_by_sid(
            getattr(request, "cum_sid", "")
        )
        if session is not None:
            # OIDC Front-/Back-Channel Logout `sid`.
            claims["sid"] = session.sid
        # How the resident authenticated for this authorization (checked by the
        # authorization endpoint and kept on the code), else the session's.
        acr = getattr(request, "cum_acr", "") or (session.acr if session is not None else "")
        amr = getattr(request, "cum_amr", None) or (list(session.amr) if session is not None else [])
        if acr:
            claims["acr"] = acr
        if amr:
            claims["amr"] = list(amr)
        return claims, expiration_time

    def finalize_id_token(
        self, id_token: dict[str, Any], token: Any, token_handler: Any, request: OAuthRequest
    ) -> str:
        claims, expiration_time = self.get_id_token_dictionary(token, token_handler, request)
        issued = id_token.get("iat")
        if isinstance(issued, int):
            # `exp` from the instant `iat` was read, not from a second reading of the clock
            # (which could fall in the next second): the lifetime is exactly the setting's.
            claims["exp"] = issued + oauth2_settings.ID_TOKEN_EXPIRE_SECONDS
            expiration_time = datetime.fromtimestamp(claims["exp"], tz=UTC)
        id_token.update(**claims)
        if "nonce" not in id_token and request.nonce:
            id_token["nonce"] = request.nonce
        # Header {typ: JWT, alg, kid} with the client's algorithm, signed as access tokens are.
        serialized = sign_jwt(id_token, typ="JWT", algorithm=request.client.signing_algorithm)
        # The row is INSERTed by save_bearer_token, in the transaction that issues the
        # access token pointing at it (_issued_id_token_row), not on its own here.
        id_token_row = get_id_token_model()(
            user=request.user,
            scope=request.scope or " ".join(request.scopes),
            expires=expiration_time,
            jti=id_token["jti"],
            application=request.client,
        )
        request.access_token = id_token_row
        request.id_token = id_token_row
        request._cum_issued_id_token = (serialized, id_token_row)
        return serialized

    def _get_key_for_token(self, token: str) -> jwk.JWK | None:
        """django-oauth-toolkit's hook (ID tokens it reads back): same as key_for_token."""
        return self.key_for_token(token)

    def key_for_token(self, token: str) -> jwk.JWK | None:
        """The published key that verifies a JWS we signed (by its `kid`), or None.

        Only the header is read: the caller verifies the signature with the key returned.
        """
        try:
            unverified = jws.JWS()
            unverified.deserialize(token)
            header = unverified.jose_header
        except (JWException, ValueError, TypeError):
            return None
        kid = header.get("kid") if isinstance(header, dict) else None
        if not kid or header.get("alg") not in {"RS256", "ES256"}:
            return None
        return verification_key(kid)
