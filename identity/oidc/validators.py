"""Our request validator: django-oauth-toolkit's, corrected where the specs require it."""

from __future__ import annotations

import json
import logging
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone
from jwcrypto import jwk, jws, jwt
from jwcrypto.common import JWException
from oauth2_provider.models import get_access_token_model, get_grant_model, get_refresh_token_model
from oauth2_provider.oauth2_validators import OAuth2Validator
from oauth2_provider.settings import oauth2_settings
from oauthlib.common import Request as OAuthRequest
from oauthlib.oauth2.rfc6749 import errors as oauth2_errors

from identity.keys import active_signing_key, verification_key
from identity.oidc.claims import standard_claims
from identity.oidc.constants import CLAIM_SCOPE
from identity.oidc.subjects import subject_for
from identity.sessions import (
    browser_session_by_sid,
    session_client_record,
    session_tokens_revoke,
)

log = logging.getLogger(__name__)


def _as_utc(value: datetime | None) -> datetime:
    value = value or timezone.now()
    if timezone.is_naive(value):
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


class Validator(OAuth2Validator):
    # --- client authentication ---------------------------------------------------------
    def _check_secret(self, provided_secret: str, stored_secret: str) -> bool:
        # Keyed fast hash only: a plaintext or password-hasher value never matches.
        from identity.crypto import keyed_hash_matches

        return keyed_hash_matches(provided_secret or "", stored_secret or "")

    def _load_application(self, client_id: str, request: OAuthRequest) -> Any:
        # The client row is read by nearly every protocol request: served from the
        # in-process cache (identity/client_cache.py: changes on this process take effect
        # at once, on other processes within its TTL). Misses go to django-oauth-toolkit.
        from identity.client_cache import client_cache_generation, client_cache_get, client_cache_put

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
        """Exactly one method, and the one registered for the client (identity/oidc/client_auth.py)."""
        from identity.oidc.client_auth import (
            ClientAuthError,
            assertion_client_id,
            method_used,
            verify_client_assertion,
        )

        used = method_used(request)
        if not used:  # none presented, or several at once (RFC 6749 §2.3)
            return False
        if used == "private_key_jwt":
            client_id = assertion_client_id(request)
            if not client_id or (request.client_id and request.client_id != client_id):
                return False
            client = self._load_application(client_id, request)
            if client is None or client.token_endpoint_auth_method != "private_key_jwt":
                return False
            try:
                verify_client_assertion(client, request)
            except ClientAuthError as exc:
                log.info("client %s: private_key_jwt refused: %s", client.client_id, exc)
                return False
            request.client_id = client_id
            return True
        if used == "client_secret_basic":
            authenticated = self._authenticate_basic_auth(request)
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
        expires = expires or timezone.now() + timedelta(
            seconds=oauth2_settings.AUTHORIZATION_CODE_EXPIRE_SECONDS
        )
        return get_grant_model().objects.create(
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
        )

    def validate_code(
        self, client_id: str, code: str, client: Any, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> bool:
        grant_model = get_grant_model()
        grant = grant_model.objects.filter(code=code, application=client).select_related("user").first()
        if grant is None:
            return False
        # RFC 6749 §4.1.2: a code is used once; a second use is refused and the tokens
        # issued from the first use are revoked. The row is kept (marked redeemed) rather
        # than deleted so that the replay can be recognised. Claimed atomically here, so
        # two concurrent redemptions cannot both obtain tokens.
        claimed = grant_model.objects.filter(pk=grant.pk, redeemed_at__isnull=True).update(
            redeemed_at=timezone.now()
        )
        if not claimed:
            family = grant_model.objects.filter(pk=grant.pk).values_list("token_family", flat=True).first()
            if family:
                get_refresh_token_model().revoke_family(family)
            return False
        if grant.is_expired() or not grant.user.is_active:
            return False
        if grant.sid:
            session = browser_session_by_sid(grant.sid)
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

    def _redeemed_grant(self, code: str, request: OAuthRequest) -> Any:
        """The row validate_code read for `code` in this request, else a fresh read."""
        memo = getattr(request, "_cum_grant", None)
        client = request.client
        if memo is not None and client is not None and memo[:2] == (code, client.client_id):
            return memo[2]
        return get_grant_model().objects.filter(code=code, application=client).first()

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
        # Already marked redeemed by validate_code; remember which tokens it produced.
        family = getattr(request, "_cum_token_family", None)
        if family:
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
    # django-oauth-toolkit's constructors, with our two columns set before the INSERT.
    def _create_access_token(
        self, expires: Any, request: OAuthRequest, token: dict[str, Any], source_refresh_token: Any = None
    ) -> Any:
        id_token = token.get("id_token")
        if id_token:
            # finalize_id_token just saved the row for this very token: use it rather than
            # verifying our own signature and selecting the row again (_load_id_token).
            issued = getattr(request, "_cum_issued_id_token", None)
            id_token = issued[1] if issued and issued[0] == id_token else self._load_id_token(id_token)
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
        access_token.save()
        return access_token

    def _create_refresh_token(
        self, request: OAuthRequest, refresh_token_code: str, access_token: Any, previous_refresh_token: Any
    ) -> Any:
        refresh_token = get_refresh_token_model()(
            user=request.user,
            application=request.client,
            access_token=access_token,
            token_family=previous_refresh_token.token_family if previous_refresh_token else uuid.uuid4(),
            resource=getattr(request, "resource", []),
            auth_time=getattr(request, "auth_time", None),
            sid=getattr(request, "cum_sid", "") or "",
            claims_request=request.claims if isinstance(request.claims, dict) else None,
            acr=getattr(request, "cum_acr", "") or "",
            amr=list(getattr(request, "cum_amr", None) or []),
        )
        self._set_token_value(refresh_token, refresh_token_code)
        refresh_token.save()
        request._cum_token_family = refresh_token.token_family
        return refresh_token

    def save_bearer_token(
        self, token: dict[str, Any], request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> Any:
        with transaction.atomic():
            result = super().save_bearer_token(token, request, *args, **kwargs)
            sid = getattr(request, "cum_sid", "")
            if sid and request.user is not None and not session_client_record(sid=sid, client=request.client):
                # The session ended while these tokens were being issued: they die with it.
                session_tokens_revoke(sid=sid)
        return result

    def validate_refresh_token(
        self, refresh_token: str, client: Any, request: OAuthRequest, *args: Any, **kwargs: Any
    ) -> bool:
        valid = super().validate_refresh_token(refresh_token, client, request, *args, **kwargs)
        if valid:
            if not request.user.is_active:
                return False
            previous = request.refresh_token_instance
            request.auth_time = previous.auth_time
            request.cum_sid = previous.sid
            request.cum_acr = previous.acr
            request.cum_amr = list(previous.amr or [])
            if previous.claims_request:
                request.claims = previous.claims_request
        return valid

    # --- access tokens at resource endpoints (userinfo) -------------------------------------
    def validate_bearer_token(self, token: str, scopes: list[str], request: OAuthRequest) -> bool:
        if not super().validate_bearer_token(token, scopes, request):
            return False
        # A deactivated resident's tokens stop working at once, not when they expire.
        user = getattr(request, "user", None)
        if user is not None and not user.is_active:
            request.oauth2_error = {
                "error": "invalid_token",
                "error_description": "The access token is invalid.",
            }
            return False
        # django-oauth-toolkit's AccessToken.scopes keeps only the scopes named in the
        # SCOPES setting; the token's own scope string is what was granted.
        request.scopes = request.access_token.scope.split()
        return True

    # --- claims and ID tokens ---------------------------------------------------------------
    def get_additional_claims(self, request: OAuthRequest) -> dict[str, Any]:
        return standard_claims(request.user)

    def released_claims(self, request: OAuthRequest, member: str) -> dict[str, Any]:
        """The claims this client receives now, in the ID token or at userinfo (`member`).

        `sub` always (pairwise per sector, public only for internal services, OIDC Core §8).
        Every other claim only under a scope the token was granted, and only while the
        consent ledger grants that sharing (identity/oidc/consent.py): a withdrawn consent
        leaves `sub` alone. Claims named in the `claims` request parameter (§5.5) are
        released under the same rule, so the parameter never widens what the scopes cover.
        """
        from identity.oidc.consent import sharing_granted

        claims: dict[str, Any] = {"sub": subject_for(request.client, request.user)}
        scopes = set(request.scopes or [])
        if not scopes - {"openid"} or not sharing_granted(request.user, request.client, scopes):
            return claims
        for name, value in standard_claims(request.user).items():
            if CLAIM_SCOPE.get(name) in scopes:
                claims[name] = value
        return claims

    def get_oidc_claims(self, token: Any, token_handler: Any, request: OAuthRequest) -> dict[str, Any]:
        return self.released_claims(request, "id_token")

    def get_userinfo_claims(self, request: OAuthRequest) -> dict[str, Any]:
        token = getattr(request, "access_token", None)
        if token is not None and getattr(token, "claims_request", None):
            request.claims = token.claims_request
        return self.released_claims(request, "userinfo")

    def get_id_token_dictionary(self, token: Any, token_handler: Any, request: OAuthRequest) -> Any:
        claims, expiration_time = super().get_id_token_dictionary(token, token_handler, request)
        claims["auth_time"] = int(
            _as_utc(getattr(request, "auth_time", None) or request.user.last_login).timestamp()
        )
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
        id_token.update(**claims)
        if "nonce" not in id_token and request.nonce:
            id_token["nonce"] = request.nonce
        key = active_signing_key(request.client.signing_algorithm)
        header = {"typ": "JWT", "alg": key.algorithm, "kid": key.kid}
        signed = jwt.JWT(header=header, claims=json.dumps(id_token, default=str))
        signed.make_signed_token(key.jwk)
        id_token_row = self._save_id_token(id_token["jti"], request, expiration_time)
        request.access_token = id_token_row
        request.id_token = id_token_row
        serialized = signed.serialize()
        request._cum_issued_id_token = (serialized, id_token_row)
        return serialized

    def _get_key_for_token(self, token: str) -> jwk.JWK | None:
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
