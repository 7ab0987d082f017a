"""The sign-in page (email and password), shared by /connexion/ and FranceConnect's linking step.

Its own module so that identity.franceconnect.views can extend it while identity.views
(the sign-out page) calls FranceConnect's sign-out: no import cycle.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import views as auth_views
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from common.ratelimit import client_ip
from common.redirects import with_next
from identity import ratelimit, signin_page
from identity.forms import LoginForm
from identity.mfa import flow as mfa_flow
from identity.mfa.services import login_second_factor_required
from identity.reauth import staff_mfa_redirect
from identity.sessions import device_label
from identity.signin import (
    login_notify_new_device,
    login_record_success,
    session_login,
    sign_in_has_second_factor,
)


class LoginView(auth_views.LoginView):
    """Sign-in by email and password.

    A resident whose address is not verified yet may still sign in: blocking them
    would lock out anyone whose verification email is late or lost, and partners learn
    the status from the `email_verified` claim. The account page offers a new link.
    Signed-in visitors still see the form: the authorization endpoint sends residents
    here to sign in again (prompt=login, max_age).
    """

    template_name = "identity/login.html"
    form_class = LoginForm
    redirect_authenticated_user = False
    # The plain form page from identity.signin_page's pre-rendered copy. Only this view's own
    # page: a subclass (FranceConnect's linking step) has its own template and context.
    prerendered_page = True

    def get(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if (
            self.prerendered_page
            and type(self) is LoginView
            and self.extra_context is None
            and signin_page.eligible(request, initial=self.get_initial())
        ):
            next_url = self.get_redirect_url()
            return signin_page.render(
                template_name=self.template_name,
                context=lambda: self.get_context_data(form=self.get_form()),
                request=request,
                next_url=next_url,
                register_url=with_next(reverse("identity:register"), next_url),
            )
        return super().get(request, *args, **kwargs)

    def get_initial(self) -> dict[str, Any]:
        initial = super().get_initial()
        hint = (self.request.GET.get("login_hint") or "").strip()
        if hint and len(hint) <= 254 and "@" in hint:
            initial["username"] = hint
        return initial

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        next_url = self.get_redirect_url()
        context["register_url"] = with_next(reverse("identity:register"), next_url)
        return context

    # The form is always form_class's (LoginForm); Django's signature names the base form.
    def form_valid(self, form: LoginForm) -> HttpResponse:  # type: ignore[override]
        user = form.get_user()
        throttle = form.throttle
        if sign_in_has_second_factor(user):
            # Not signed in yet: the password alone only opens the second step
            # (identity/mfa/flow.py). The sign-in limits are cleared only after that step,
            # so the password cannot be used to reset the count of second-factor guesses.
            mfa_flow.pending_start(request=self.request, user=user, next_url=self.get_redirect_url())
            login_second_factor_required(user=user, ip=client_ip(self.request))
            return HttpResponseRedirect(reverse("identity:mfa:verify"))
        first_sign_in = user.last_login is None  # read before session_login sets it
        staff = session_login(request=self.request, user=user, amr=["pwd"])
        ip = client_ip(self.request)
        known = bool(throttle and throttle.device)
        login_record_success(user=user, ip=ip, known_device=known)
        login_notify_new_device(
            user=user,
            known_device=known,
            first_sign_in=first_sign_in,
            device=device_label(self.request.META.get("HTTP_USER_AGENT", "")),
            ip=ip,
        )
        if throttle is not None:
            throttle.succeeded()
        target = self.get_success_url()
        if staff:
            # Staff must have a second factor (identity.reauth): enrol one first; the staff
            # page asked for comes after the step-up with it.
            target = staff_mfa_redirect(self.request, self.get_redirect_url())["Location"]
        response = HttpResponseRedirect(target)
        ratelimit.remember_device(self.request, response, user)
        return response
