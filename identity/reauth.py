"""How strong and how recent a session must be, in one place (issue 9, findings 1 and 2).

Two rules:

- **Staff work at the MFA level.** Staff are active accounts that are `is_staff` or
  `is_superuser`, or members of the "dpo" or "support" groups (`is_staff_member`). Every
  staff page and API (the admin, the DPO console and its API) requires a session whose
  `amr` contains "mfa" (`session_is_mfa`: password + second factor, or a passkey with user
  verification). A staff member without a factor is sent to enrol one; one with a factor but
  a weaker session (password only, FranceConnect, a passkey without user verification) is
  sent to sign in again with the second factor. `staff_mfa_required` (pages),
  `StaffMFAPermission` (DRF) and identity.admin_site.StaffAdminSite apply it.

- **Sensitive actions need a recent MFA sign-in ("sudo mode").** `recent_mfa`: the session
  is at the MFA level and its authentication time is less than `RECENT_MFA_SECONDS` (10
  minutes) old. Required for an operator's factor reset, partner client changes and the
  DPO's exports, and for a resident's own factor changes once the account has a factor
  (adding, renaming or removing one, regenerating backup codes): a one-factor session must
  not be able to give itself a factor and then pass the step-up. `recent_mfa_required`
  (pages: redirect to re-authenticate then back), `RecentMFAPermission` (DRF: an RFC 7807
  problem).

- **A resident's own sensitive request needs a recent sign-in.** `recent_sign_in`: within
  10 minutes, with the second factor when the account has one (`recent_mfa`), else the
  password (or FranceConnect) again; `recent_sign_in_redirect` sends the browser to sign in
  again and back. The export of the resident's data (consent.views_rights) uses it.

Re-authenticating is itself MFA: the sign-in page (password, then the second factor, the
session being replaced by the new one) when the account has a password, else the step-up
page (/connexion/verification/, which asks for one of the account's existing factors).

Every staff request that passes the gate writes a `staff.request` audit row (operator id,
URL name, method, object id, status: never the query string, which may hold an email
address typed in a search); a refused one writes `staff.refused`. Staff sign-ins write
`staff.signed_in` (identity.signin.session_login).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.db.models import Exists, OuterRef
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    HttpResponseRedirect,
    JsonResponse,
)
from django.urls import reverse
from django.utils.translation import gettext as _
from rest_framework import exceptions
from rest_framework.permissions import BasePermission

from common.problems import problem
from common.ratelimit import client_ip
from common.redirects import with_next
from identity.audit import audit_log
from identity.mfa.selectors import step_up_url, user_has_mfa
from identity.models import User
from identity.request_user import request_user
from identity.selectors import session_amr
from identity.sessions import SESSION_AUTH_TIME

STAFF_GROUPS = ("dpo", "support")
RECENT_MFA_SECONDS = 10 * 60
SESSION_AFTER_ENROL = "reauth.after_enrol"
PROBLEM_MFA_REQUIRED = "mfa_required"
PROBLEM_RECENT_REQUIRED = "recent_authentication_required"
AUDIT_OBJECT_KWARGS = ("object_id", "event_id", "factor_id", "pk")
AUDIT_SELECTED_MAX = 100


# --- the rule ----------------------------------------------------------------------------------


def is_staff_member(user: Any) -> bool:
    """Staff: the admin's users, the DPO and the support operators (active accounts only)."""
    if user is None or not getattr(user, "is_authenticated", False) or not user.is_active:
        return False
    if user.is_staff or user.is_superuser:
        return True
    # The password sign-in reads the account with this answer (identity.signin.user_for_sign_in:
    # the `in_staff_group` annotation of `staff_group_exists`), in the same request.
    in_staff_group = getattr(user, SIGN_IN_STAFF_GROUP, None)
    if isinstance(in_staff_group, bool):
        return in_staff_group
    return user.groups.filter(name__in=STAFF_GROUPS).exists()


SIGN_IN_STAFF_GROUP = "sign_in_staff_group"


def staff_group_exists() -> Exists:
    """The condition "this account row is in a staff group", for a query on User."""
    return Exists(User.groups.through.objects.filter(user_id=OuterRef("pk"), group__name__in=STAFF_GROUPS))


def session_is_mfa(request: HttpRequest) -> bool:
    """The signed-in session was opened with two factors (RFC 8176 "mfa" in its amr)."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_authenticated and "mfa" in session_amr(request))


def session_auth_age(request: HttpRequest) -> float | None:
    """Seconds since this session's last sign-in (None when unknown: never "recent")."""
    value = request.session.get(SESSION_AUTH_TIME)
    if value is None:
        return None
    try:
        # The clock identity.signin.session_login writes auth_time with.
        return time.time() - float(value)
    except (TypeError, ValueError):
        return None


def recent_mfa(request: HttpRequest, seconds: int = RECENT_MFA_SECONDS) -> bool:
    """At the MFA level and authenticated within the last `seconds` (sudo mode)."""
    if not session_is_mfa(request):
        return False
    age = session_auth_age(request)
    return age is not None and age <= seconds


def user_has_factor(user: Any) -> bool:
    return user_has_mfa(user)


# --- where to send the browser -------------------------------------------------------------------


def reauth_url(request: HttpRequest, next_url: str) -> str:
    """Where to prove who you are again with two factors, then come back to `next_url`."""

    user = request.user
    if user.is_authenticated and user.has_usable_password():
        return with_next(reverse("identity:login"), next_url)
    return step_up_url(next_url)


def enrol_url(request: HttpRequest, next_url: str) -> str:
    """The factor pages; after the first factor is enrolled, the step-up then `next_url`."""
    if next_url:
        request.session[SESSION_AFTER_ENROL] = next_url
    return reverse("identity:mfa:factors")


def after_enrol_url(request: HttpRequest) -> str | None:
    """Called when a factor was just enrolled: if a staff page sent the browser to enrol and
    the session is not MFA yet, the step-up with the new factor, then that page."""

    target = request.session.pop(SESSION_AFTER_ENROL, None)
    if not target or session_is_mfa(request):
        return target or None
    return step_up_url(str(target))


def _next_of(request: HttpRequest) -> str:
    # After re-authenticating the browser comes back with a GET: a form posted without a
    # recent sign-in is shown again rather than replayed.
    return request.get_full_path() if request.method in ("GET", "HEAD") else request.path


def staff_mfa_redirect(request: HttpRequest, next_url: str | None = None) -> HttpResponse:
    """A signed-in staff member without an MFA session: enrol a factor, or sign in with it."""
    next_url = next_url if next_url is not None else _next_of(request)
    if not user_has_factor(request.user):
        messages.info(
            request,
            _(
                "Les comptes du personnel doivent être protégés par une double authentification : "
                "ajoutez une application d'authentification ou une clé d'accès pour continuer."
            ),
        )
        return HttpResponseRedirect(enrol_url(request, next_url))
    messages.info(
        request, _("Cette page demande une connexion avec votre second facteur : reconnectez-vous.")
    )
    return HttpResponseRedirect(reauth_url(request, next_url))


def reauth_redirect(request: HttpRequest, next_url: str | None = None) -> HttpResponse:
    """Sudo mode not met on a page: re-authenticate (two factors), then back."""
    next_url = next_url if next_url is not None else _next_of(request)
    messages.info(
        request,
        _(
            "Pour cette opération, confirmez d'abord votre identité avec votre second facteur : "
            "cette confirmation est redemandée au bout de 10 minutes."
        ),
    )
    return HttpResponseRedirect(reauth_url(request, next_url))


def recent_problem(request: HttpRequest, next_url: str = "/") -> JsonResponse:
    return problem(
        403,
        _("Authentification récente requise"),
        _(
            "Cette opération demande une connexion avec votre second facteur de moins de 10 minutes : "
            "reconnectez-vous puis réessayez."
        ),
        type_=f"urn:cum:problem:{PROBLEM_RECENT_REQUIRED}",
        code=PROBLEM_RECENT_REQUIRED,
        reauthenticate=reauth_url(request, next_url),
    )


# --- decorators and DRF permissions ------------------------------------------------------------


View = Callable[..., HttpResponseBase]  # a page may stream its answer (the DPO export)


def staff_mfa_required(view: View) -> View:
    """A staff page: visitors sign in; staff without an MFA session enrol or step up first.
    Who may see the page (the DPO group…) is the view's or an outer decorator's business."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not session_is_mfa(request):
            staff_refused_audit(request, reason=PROBLEM_MFA_REQUIRED)
            return staff_mfa_redirect(request)
        return staff_request_audited(request, view, *args, **kwargs)

    return wrapper


def recent_mfa_required(view: View) -> View:
    """Sudo mode for a page: an MFA sign-in within the last 10 minutes, else the browser is
    sent to re-authenticate and back (APIs: RecentMFAPermission)."""

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if recent_mfa(request):
            return view(request, *args, **kwargs)
        staff_refused_audit(request, reason=PROBLEM_RECENT_REQUIRED)
        if not user_has_factor(request.user):
            return staff_mfa_redirect(request)
        return reauth_redirect(request)

    return wrapper


def recent_sign_in(request: HttpRequest, seconds: int = RECENT_MFA_SECONDS) -> bool:
    """A resident's "recent sign-in" for a sensitive request of their own (the export of
    their data): within the last `seconds`, at the strongest level the account allows: with
    the second factor when it has one (`recent_mfa`), else with the password (or
    FranceConnect) again."""
    user = request.user
    if not user.is_authenticated:
        return False
    if user_has_factor(user):
        return recent_mfa(request, seconds)
    age = session_auth_age(request)
    return age is not None and age <= seconds


def recent_sign_in_redirect(request: HttpRequest, next_url: str | None = None) -> HttpResponse:
    """`recent_sign_in` not met: sign in again (password, then the second factor if the
    account has one), then back to `next_url` (a GET: a posted form is shown again)."""
    next_url = next_url if next_url is not None else _next_of(request)
    messages.info(
        request,
        _(
            "Pour cette demande, confirmez d'abord votre identité en vous reconnectant : "
            "cette confirmation est valable 10 minutes."
        ),
    )
    if user_has_factor(request.user):
        return HttpResponseRedirect(reauth_url(request, next_url))
    return HttpResponseRedirect(with_next(reverse("identity:login"), next_url))


class _Problem(exceptions.APIException):
    """A DRF refusal rendered as an RFC 7807 problem with its own type
    (common.problems.drf_exception_handler reads `problem_type` and `problem_extra`)."""

    status_code = 403
    problem_code = ""

    def __init__(self, detail: str, extra: dict[str, Any]) -> None:
        super().__init__(detail)
        self.problem_type = f"urn:cum:problem:{self.problem_code}"
        self.problem_extra = {"code": self.problem_code, **extra}


class MFARequired(_Problem):
    problem_code = PROBLEM_MFA_REQUIRED
    default_detail = "MFA required"


class RecentAuthenticationRequired(_Problem):
    problem_code = PROBLEM_RECENT_REQUIRED
    default_detail = "Recent authentication required"


class StaffMFAPermission(BasePermission):
    """DRF: a signed-in session at the MFA level. Put after the permission that says who
    may use the API (so that residents get a plain 403, and staff the reason)."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if not getattr(request.user, "is_authenticated", False):
            return False
        if session_is_mfa(request):
            return True
        staff_refused_audit(request, reason=PROBLEM_MFA_REQUIRED)
        raise MFARequired(
            _("Connectez-vous avec votre second facteur pour utiliser cette API."),
            {"reauthenticate": reauth_url(request, "/")},
        )


class RecentMFAPermission(BasePermission):
    """DRF: sudo mode (an MFA sign-in within the last 10 minutes), else a problem whose
    `reauthenticate` member says where to sign in again."""

    def has_permission(self, request: Any, view: Any) -> bool:
        if not getattr(request.user, "is_authenticated", False):
            return False
        if recent_mfa(request):
            return True
        staff_refused_audit(request, reason=PROBLEM_RECENT_REQUIRED)
        raise RecentAuthenticationRequired(
            _(
                "Cette opération demande une connexion avec votre second facteur de moins de "
                "10 minutes : reconnectez-vous puis réessayez."
            ),
            {"reauthenticate": reauth_url(request, "/")},
        )


# --- audit of staff requests -------------------------------------------------------------------


def _view_name(request: HttpRequest) -> str:
    match = getattr(request, "resolver_match", None)
    return (match.view_name if match else "") or ""


def _audit_data(request: HttpRequest) -> dict[str, Any]:
    match = getattr(request, "resolver_match", None)
    data: dict[str, Any] = {"view": _view_name(request), "method": request.method}
    kwargs = match.kwargs if match else {}
    for key in AUDIT_OBJECT_KWARGS:
        if kwargs.get(key) is not None:
            data["object"] = str(kwargs[key])[:64]
            break
    if request.method == "POST":
        action = request.POST.get("action")
        if isinstance(action, str) and action:
            data["action"] = action[:64]
            selected = request.POST.getlist("_selected_action")
            data["selected"] = [str(value)[:64] for value in selected[:AUDIT_SELECTED_MAX]]
    return data


def staff_request_audit(request: HttpRequest, *, status: int) -> None:
    """One `staff.request` row: who (operator id), which view, which object; no query string."""
    user = request.user
    audit_log(
        event="staff.request",
        acting_user=user if user.is_authenticated else None,
        ip=client_ip(request),
        data={**_audit_data(request), "status": status},
    )


def staff_refused_audit(request: HttpRequest, *, reason: str) -> None:
    user = request.user
    if not is_staff_member(user):
        return
    audit_log(
        event="staff.refused",
        acting_user=request_user(request),
        ip=client_ip(request),
        data={"view": _view_name(request), "method": request.method, "reason": reason},
    )


def staff_request_audited(request: HttpRequest, view: View, *args: Any, **kwargs: Any) -> HttpResponseBase:
    """Run a staff view and audit it (with its status; 500 if it raised)."""
    status = 500
    try:
        response = view(request, *args, **kwargs)
        status = response.status_code
        return response
    except Exception as exc:
        status = 404 if isinstance(exc, Http404) else 403 if isinstance(exc, PermissionDenied) else 500
        raise
    finally:
        staff_request_audit(request, status=status)


def staff_sign_in_audit(*, user: Any, amr: list[str], session_id: int | None) -> bool:
    """Called by identity.signin.session_login for every sign-in (and step-up); audits those
    of staff. Returns whether `user` is staff."""
    if not is_staff_member(user):
        return False
    audit_log(
        event="staff.signed_in",
        acting_user=user,
        subject_user=user,
        data={"mfa": "mfa" in amr, "amr": list(amr), "session": session_id},
    )
    return True
