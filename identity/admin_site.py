"""The staff admin site: one sign-in for everyone, at the MFA level, every request audited.

Django's admin has its own login page (a password, nothing else: no per-account or per-IP
limits, no second factor, no audit). Here (issue 9, finding 1):

- `/admin/login/` checks no password: it sends visitors to `/connexion/` (limits, second
  factor, audit), staff without an MFA session to enrol a factor or sign in with it
  (identity.reauth), and signed-in non-staff get a 403;
- `has_permission` also requires a session at the MFA level, so every admin page (all go
  through `admin_view`) refuses a password-only, FranceConnect or passkey-without-user-
  verification session;
- every admin request that passes writes a `staff.request` audit row (identity.reauth);
- the admin's own password-change and logout pages are our account pages (our password
  change ends the other sessions, our sign-out ends the session record).

Installed as the default admin site by identity.admin_apps.StaffAdminConfig (INSTALLED_APPS).
"""

from __future__ import annotations

from functools import wraps
from typing import Any

from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.urls import reverse

from common.redirects import safe_next, with_next
from identity import reauth


class StaffAdminSite(admin.AdminSite):
    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and reauth.session_is_mfa(request)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        next_url = safe_next(request, request.GET.get("next")) or reverse(
            "admin:index", current_app=self.name
        )
        user = request.user
        if not user.is_authenticated:
            return HttpResponseRedirect(with_next(reverse("identity:login"), next_url))
        if not (user.is_active and user.is_staff):
            raise PermissionDenied
        if reauth.session_is_mfa(request):
            return HttpResponseRedirect(next_url)
        reauth.staff_refused_audit(request, reason=reauth.PROBLEM_MFA_REQUIRED)
        return reauth.staff_mfa_redirect(request, next_url)

    # django-stubs says TemplateResponse; Django's own answer may be a redirect too, as ours is.
    def logout(  # type: ignore[override]
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse("identity:logout"))

    def password_change(  # type: ignore[override]  # as logout
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        return HttpResponseRedirect(reverse("identity:password-change"))

    def admin_view(self, view: Any, cacheable: bool = False) -> Any:
        @wraps(view)
        def audited(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            return reauth.staff_request_audited(request, view, *args, **kwargs)

        return super().admin_view(audited, cacheable)
