"""Who may use the DPO console and API: active staff members of the "dpo" group, signed in
at the MFA level (identity.reauth: staff work with two factors; every request is audited)."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponseBase
from django.shortcuts import render
from django.utils.translation import gettext_lazy as _
from django.views.decorators.cache import never_cache
from rest_framework.permissions import BasePermission

from identity import reauth
from identity.audit import audit_log
from identity.models import User

DPO_GROUP = "dpo"


def is_dpo(user: Any) -> bool:
    return bool(
        user is not None
        and getattr(user, "is_authenticated", False)
        and user.is_active
        and user.is_staff
        and user.groups.filter(name=DPO_GROUP).exists()
    )


def dpo_required(view: Callable[..., HttpResponseBase]) -> Callable[..., HttpResponseBase]:
    """Console pages: sign-in page for visitors, 403 page for anyone else who is not the DPO,
    then identity.reauth.staff_mfa_required (an MFA session; every request audited)."""

    at_mfa_level = reauth.staff_mfa_required(view)  # MFA session, every request audited

    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())
        if not is_dpo(request.user):
            return render(request, "consent/dpo/forbidden.html", status=403)
        return at_mfa_level(request, *args, **kwargs)

    return never_cache(wrapper)


class IsDPO(BasePermission):
    message = _("Réservé au délégué à la protection des données (groupe « dpo »).")

    def has_permission(self, request: Any, view: Any) -> bool:
        return is_dpo(request.user)


# The API's permissions, in order: the DPO (else a plain 403), then an MFA session (else a
# problem of type urn:cum:problem:mfa_required).
DPO_API_PERMISSIONS = [IsDPO, reauth.StaffMFAPermission]


def log_read(*, dpo: User, view: str, subject: User | None = None, **data: Any) -> None:
    """Audit one read of personal data by the DPO: event "dpo.read", the DPO as acting user,
    the resident as subject user, ids and filter codes only (identity.audit.audit_log)."""
    audit_log(event="dpo.read", acting_user=dpo, subject_user=subject, data={"view": view, **data})
