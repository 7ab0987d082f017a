"""Writes of the FranceConnect app: links, accounts created from FranceConnect, sign-in,
unlinking, and the little state a FranceConnect sign-in keeps in the browser session.

What a session opened through FranceConnect says about the sign-in (`franceconnect_sign_in`):

- ``amr`` (identity.sessions.SESSION_AMR and the BrowserSession record): the methods
  FranceConnect reports in its ID token ``amr`` (RFC 8176 values such as ``pwd``, ``pin``,
  ``pop``, ``mfa``, plus FranceConnect's ``mail``), asked for with the ``claims`` parameter;
  ``["pwd"]`` when FranceConnect sends none (every FranceConnect identity provider checks
  at least a password).
- ``acr``: the level FranceConnect vouched for, ``eidas1`` (eIDAS low) on FranceConnect.
  It is written on the BrowserSession record after `session_login`, because the record
  would otherwise derive the level from ``amr`` alone; a FranceConnect ``mfa`` does not
  raise the eIDAS level (FranceConnect's own documentation), so it is not our MFA level.
- The upstream ID token is kept in the Django session only (``franceconnect.session``),
  for the end-session call at sign-out; it is never written to the database.

Audit events carry ids and reason codes only: never a name, a birth date or an address.

The identity waiting for "J'ai déjà un compte" (finding 9 of issue 9: a shared computer).
A first FranceConnect sign-in leaves the identity in *this browser's* Django session only
(encrypted, `PendingIdentity`), never in a table or a cookie of its own. Linking it to an
existing account takes one explicit flow, bound to a one-time flow id:

1. "J'ai déjà un compte" (`pending_request_link`) ends any session open in the browser,
   draws a random flow id and sends the browser to the dedicated page
   /franceconnect/lier/connexion/?flow=<id>, which names the FranceConnect identity
   ("FranceConnect a identifié Angela DUBOIS") and asks for the password of the account.
2. A correct password typed on *that* page (`pending_link_sign_in_started`) marks the
   pending identity with the account about to be signed in to, for as long as the second
   step of a sign-in may take (identity.mfa.flow.PENDING_SECONDS).
3. Every django.contrib.auth login() and logout() reaches `pending_on_sign_in` /
   `pending_drop` (receivers in identity.franceconnect.receivers). A sign-in keeps the
   pending identity only when it is the one step 2 announced: same account, within the
   window, completed on the dedicated page or on the second-factor pages that continue it;
   it then binds the pending identity to that account and spends the mark. Any other sign-in
   (the sign-in page, a passkey, FranceConnect, another account, a second sign-in), and any
   sign-out, drops it. Sessions ended from elsewhere (sign-out everywhere, revocation, "ce
   n'était pas vous") delete the stored session, pending identity included.
4. The confirmation page /franceconnect/lier/?flow=<id> shows only to the account bound in
   step 3, signed in after step 1 and not through FranceConnect, and names both the
   FranceConnect identity and the account; nothing is linked before its POST.

Two clocks, never compared with each other: the flow's lifetimes run on identity.mfa.clock
(with the second step they bound; tests move it), while "signed in after step 1" compares the
session's `auth_time`, stamped by identity.signin with the wall clock, with the wall-clock
time of step 1 (`link_requested_wall_time`).

The pending identity lives at most PENDING_MAX_AGE_SECONDS after FranceConnect, the link
flow at most LINK_MAX_AGE_SECONDS after "J'ai déjà un compte". What this does not cover:
someone who takes over the browser *on the dedicated page itself* and deliberately signs in
there to their own account is shown whose identity they are about to link, and can still
confirm; only the short lifetimes bound that window.
"""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from common.crypto import decrypt_at_rest, encrypt_at_rest
from identity.audit import audit_log
from identity.franceconnect.client import Authentication
from identity.franceconnect.models import FranceConnectLink
from identity.mfa import clock
from identity.mfa.flow import PENDING_SECONDS as SECOND_STEP_SECONDS
from identity.models import User
from identity.services import AccountError, email_verification_send, user_create
from identity.sessions import SESSION_AUTH_TIME
from identity.signin import session_login, session_logout

SESSION_REQUEST = "franceconnect.request"
SESSION_PENDING = "franceconnect.pending"
SESSION_FC = "franceconnect.session"
SESSION_LOGOUT_STATE = "franceconnect.logout_state"

REQUEST_MAX_AGE_SECONDS = 15 * 60
PENDING_MAX_AGE_SECONDS = 15 * 60
# From "J'ai déjà un compte" to the confirmation: a sign-in, perhaps a second factor.
LINK_MAX_AGE_SECONDS = 10 * 60
_PENDING_CONTEXT = b"franceconnect-pending"


class LinkError(ValueError):
    """Why a link could not be made or removed. `code` picks the resident-facing message."""

    def __init__(self, code: str) -> None:
        self.code = code
        super().__init__(code)


# --- the authorization request (state, nonce) -----------------------------------------------------


def auth_request_start(*, request: HttpRequest, next_url: str = "") -> tuple[str, str]:
    """A fresh state and nonce, remembered in the session for exactly one callback."""
    state = secrets.token_urlsafe(32)
    nonce = secrets.token_urlsafe(32)
    request.session[SESSION_REQUEST] = {
        "state": state,
        "nonce": nonce,
        "next": next_url,
        "created": int(time.time()),
    }
    return state, nonce


def auth_request_pop(*, request: HttpRequest) -> dict[str, Any] | None:
    """The pending authorization request, removed from the session (single use)."""
    pending = request.session.pop(SESSION_REQUEST, None)
    if not isinstance(pending, dict):
        return None
    if int(pending.get("created", 0)) + REQUEST_MAX_AGE_SECONDS < time.time():
        return None
    return pending


# --- the identity waiting for "create my account" or "I already have one" -------------------------


@dataclass
class PendingIdentity:
    """What a first FranceConnect sign-in leaves for the choice page, for a few minutes.

    Stored encrypted (AES-256-GCM, common.crypto) in the session: session rows sit in the
    database or Redis, and names and an email address are personal data. The rest of the
    identity pivot is not kept at all.
    """

    sub: str
    given_name: str
    family_name: str
    email: str
    id_token: str
    acr: str
    amr: list[str] = field(default_factory=list)
    next: str = ""
    created: int = 0
    link_requested_at: int = 0  # identity.mfa.clock: the flow's age
    link_requested_wall_time: int = 0  # the same moment on the session's auth_time clock
    # The one-time link flow (module docstring): its id, the sign-in announced by the
    # dedicated page (account id, when), then the account that sign-in opened.
    link_flow: str = ""
    link_sign_in_user: str = ""
    link_sign_in_at: int = 0
    link_user: str = ""

    @classmethod
    def from_authentication(cls, auth: Authentication, *, next_url: str = "") -> PendingIdentity:
        return cls(
            sub=auth.sub,
            given_name=auth.identity.given_name,
            family_name=auth.identity.usual_family_name,
            email=auth.identity.email,
            id_token=auth.id_token,
            acr=auth.acr,
            amr=list(auth.amr),
            next=next_url,
            created=int(clock.now()),
        )


def pending_save(*, request: HttpRequest, pending: PendingIdentity) -> None:
    blob = encrypt_at_rest(json.dumps(asdict(pending)).encode(), context=_PENDING_CONTEXT)
    request.session[SESSION_PENDING] = base64.urlsafe_b64encode(blob).decode()


def pending_load(request: HttpRequest) -> PendingIdentity | None:
    value = request.session.get(SESSION_PENDING)
    if not isinstance(value, str):
        return None
    try:
        data = json.loads(decrypt_at_rest(base64.urlsafe_b64decode(value), context=_PENDING_CONTEXT))
        pending = PendingIdentity(**data)
    except Exception:  # a key change or a damaged value: the choice is simply lost
        request.session.pop(SESSION_PENDING, None)
        return None
    if pending.created + PENDING_MAX_AGE_SECONDS < clock.now():
        request.session.pop(SESSION_PENDING, None)
        return None
    return pending


def pending_clear(*, request: HttpRequest) -> None:
    request.session.pop(SESSION_PENDING, None)


def pending_request_link(*, request: HttpRequest, pending: PendingIdentity, ip: str = "") -> str:
    """The resident chose "I already have an account": start the one-time link flow and
    return its id (module docstring). Only a sign-in started from the dedicated page with
    this id, to an account, with its password and not through FranceConnect, proves they
    own the account to link.

    A session already open in this browser proves nothing (it may be old, or someone
    else's on a shared computer), so it ends here: the resident signs in again.
    """
    if request.user.is_authenticated:
        session_logout(request=request, ip=ip)  # flushes the session, pending identity included
    pending.link_requested_at = int(clock.now())
    pending.link_requested_wall_time = int(time.time())
    pending.link_flow = secrets.token_urlsafe(24)
    pending.link_sign_in_user = ""
    pending.link_sign_in_at = 0
    pending.link_user = ""
    pending_save(request=request, pending=pending)
    request.session.pop(SESSION_FC, None)
    return pending.link_flow


def pending_link_load(*, request: HttpRequest, flow: str) -> PendingIdentity | None:
    """The pending identity of this browser if its link flow is `flow` and still open.

    An expired link flow drops the pending identity.
    """
    pending = pending_load(request)
    if pending is None or not pending.link_flow or not pending.link_requested_at:
        return None
    if not hmac.compare_digest(pending.link_flow.encode(), (flow or "").encode("utf-8", "replace")):
        return None
    if pending.link_requested_at + LINK_MAX_AGE_SECONDS < clock.now():
        pending_clear(request=request)
        return None
    return pending


def pending_link_signed_in_after_request(*, pending: PendingIdentity, auth_time: Any) -> bool:
    """Whether the session's sign-in (its `auth_time`, identity.signin: the wall clock)
    happened at or after "J'ai déjà un compte": compared on the wall clock only."""
    requested = pending.link_requested_wall_time or pending.link_requested_at  # a flow begun before
    return isinstance(auth_time, int | float) and auth_time >= requested


def pending_link_sign_in_started(*, request: HttpRequest, pending: PendingIdentity, user: User) -> bool:
    """A correct password on the dedicated link page: the sign-in about to happen (now, or
    after the second factor) is the one the link flow asked for. False (nothing marked)
    once the flow's sign-in has happened: the flow id is good for one sign-in only."""
    if pending.link_user:
        return False
    pending.link_sign_in_user = str(user.pk)
    pending.link_sign_in_at = int(clock.now())
    pending_save(request=request, pending=pending)
    return True


def pending_on_sign_in(*, request: HttpRequest | None, user: User) -> None:
    """Called at every sign-in of this browser (user_logged_in): keep the pending identity
    only for the sign-in its link flow announced, else drop it (module docstring)."""

    session = getattr(request, "session", None)
    if request is None or session is None or SESSION_PENDING not in session:
        return
    pending = pending_load(request)
    if pending is None:
        return
    continuing = {
        reverse("identity:franceconnect:link-sign-in"),
        reverse("identity:mfa:verify"),
        reverse("identity:mfa:verify-passkey"),
    }
    announced = (
        bool(pending.link_flow)
        and not pending.link_user
        and pending.link_sign_in_user == str(user.pk)
        and pending.link_sign_in_at + SECOND_STEP_SECONDS >= clock.now()
        and pending.link_requested_at + LINK_MAX_AGE_SECONDS >= clock.now()
        and request.path in continuing
    )
    if not announced:
        pending_clear(request=request)
        return
    pending.link_user = str(user.pk)
    pending.link_sign_in_user = ""
    pending.link_sign_in_at = 0
    pending_save(request=request, pending=pending)


def pending_drop(*, request: HttpRequest | None) -> None:
    """Called at every sign-out of this browser (user_logged_out): the identity goes too."""
    session = getattr(request, "session", None)
    if session is not None:
        session.pop(SESSION_PENDING, None)


# --- links ----------------------------------------------------------------------------------------


@transaction.atomic
def link_create(*, user: User, sub: str, how: str, ip: str = "") -> FranceConnectLink:
    """Link `user` to the FranceConnect identity `sub`. One identity per account and per sub."""
    if FranceConnectLink.objects.filter(user=user).exists():
        raise LinkError("user_already_linked")
    if FranceConnectLink.objects.filter(sub=sub).exists():
        raise LinkError("sub_already_linked")
    try:
        with transaction.atomic():
            link = FranceConnectLink.objects.create(user=user, sub=sub, last_used_at=timezone.now())
    except IntegrityError as exc:  # linked concurrently
        raise LinkError("sub_already_linked") from exc
    audit_log(
        event="franceconnect.linked",
        acting_user=user,
        subject_user=user,
        ip=ip,
        data={"how": how, "link": link.pk},
    )
    return link


@transaction.atomic
def link_remove(*, user: User, ip: str = "") -> None:
    """Unlink: only for an account that can still be signed in to without FranceConnect."""
    link = FranceConnectLink.objects.select_for_update().filter(user=user).first()
    if link is None:
        raise LinkError("not_linked")
    if not user.has_usable_password():
        raise LinkError("no_other_sign_in")
    link_id = link.pk
    link.delete()
    audit_log(
        event="franceconnect.unlinked", acting_user=user, subject_user=user, ip=ip, data={"link": link_id}
    )


@transaction.atomic
def account_create_from_franceconnect(
    *, pending: PendingIdentity, language: str = "fr", ip: str = ""
) -> User:
    """Create an account from the identity FranceConnect vouched for, linked to it.

    - names: FranceConnect's given names and usage name (else birth name);
    - email: FranceConnect's, which is the address the resident gave their identity
      provider; FranceConnect does not say it was verified, so the account starts with
      ``email_verified=False`` and a confirmation link is emailed (partners learn the
      status from the ``email_verified`` claim);
    - no password (unusable): the resident signs in with FranceConnect, and can set one
      with "mot de passe oublié" before unlinking.

    Raises AccountError when the address already has an account (nothing is linked: the
    resident must sign in to that account to link it), LinkError when the sub got linked
    in the meantime.
    """

    if not pending.email:
        raise AccountError("no email from FranceConnect")
    if FranceConnectLink.objects.filter(sub=pending.sub).exists():
        raise LinkError("sub_already_linked")
    user = user_create(
        email=pending.email,
        password=None,
        given_name=pending.given_name,
        family_name=pending.family_name,
        email_verified=False,
        preferred_language=language if language in {"fr", "en"} else "fr",
    )
    link_create(user=user, sub=pending.sub, how="account_created", ip=ip)
    email_verification_send(user=user, ip=ip)
    return user


# --- sign-in and its session state ----------------------------------------------------------------


def session_amr(amr: list[str] | tuple[str, ...]) -> list[str]:
    """The methods recorded on our session for a FranceConnect sign-in.

    FranceConnect is eIDAS low whatever its identity provider did, and issue 5 puts it at
    our basic level: an upstream "mfa" is therefore not carried over (our session level is
    derived from "mfa" in the session amr, see identity.mfa.selectors.session_acr).
    """
    methods = [method for method in amr if method != "mfa"]
    return methods or ["pwd"]


def franceconnect_session_remember(*, request: HttpRequest, id_token: str, acr: str) -> None:
    """Remember the upstream ID token (for the end-session call) in this session only."""

    request.session[SESSION_FC] = {
        "id_token": id_token,
        "acr": acr,
        "auth_time": request.session.get(SESSION_AUTH_TIME),
    }


def franceconnect_sign_in(
    *, request: HttpRequest, link: FranceConnectLink, id_token: str, acr: str, amr: list[str], ip: str = ""
) -> None:
    """Open the resident's session for a verified FranceConnect sign-in of a linked identity."""
    user = link.user
    with transaction.atomic():
        session_login(request=request, user=user, amr=session_amr(amr))
        FranceConnectLink.objects.filter(pk=link.pk).update(last_used_at=timezone.now())
        audit_log(
            event="login.succeeded",
            subject_user=user,
            ip=ip,
            data={"method": "franceconnect", "link": link.pk},
        )
    franceconnect_session_remember(request=request, id_token=id_token, acr=acr)


def sign_in_record_failure(*, reason: str, ip: str = "", user: User | None = None) -> None:
    """A FranceConnect sign-in that did not happen: the reason code only."""
    audit_log(event="franceconnect.login_failed", subject_user=user, ip=ip, data={"reason": reason[:60]})


def logout_state_start(*, request: HttpRequest) -> str:
    state = secrets.token_urlsafe(32)
    request.session[SESSION_LOGOUT_STATE] = state
    return state
