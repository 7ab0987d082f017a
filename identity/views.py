"""Resident pages: home, sign-in and sign-out, registration, email verification,
password reset and change, account. Thin: forms validate, services write."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import translation
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods

from identity import ratelimit
from identity.forms import (
    EmailForm,
    LoginForm,
    PasswordChangeForm,
    RegistrationForm,
    SetPasswordForm,
    too_many_attempts,
)
from identity.mfa import flow as mfa_flow
from identity.mfa.selectors import user_has_mfa
from identity.mfa.services import login_second_factor_required
from identity.selectors import user_by_email, user_for_password_reset
from identity.services import (
    VerificationResult,
    account_register,
    email_verification_confirm,
    email_verification_send,
    login_record_success,
    password_reset_request,
    session_login,
    session_logout,
    user_password_change,
    user_password_reset,
)


def _safe_next(request: HttpRequest, value: str | None) -> str:
    """`value` if it is a relative URL on this site (e.g. /authorize?...), else ""."""
    if value and url_has_allowed_host_and_scheme(
        value, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return value
    return ""


def _with_next(url: str, next_url: str) -> str:
    return f"{url}?{urlencode({'next': next_url})}" if next_url else url


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "identity/home.html")


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return render(request, "identity/account.html", {"resident": request.user})


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

    def get_initial(self) -> dict[str, Any]:
        initial = super().get_initial()
        hint = (self.request.GET.get("login_hint") or "").strip()
        if hint and len(hint) <= 254 and "@" in hint:
            initial["username"] = hint
        return initial

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        next_url = self.get_redirect_url()
        context["register_url"] = _with_next(reverse("identity:register"), next_url)
        return context

    def form_valid(self, form: LoginForm) -> HttpResponse:  # type: ignore[override]
        user = form.get_user()
        throttle = form.throttle
        if user_has_mfa(user):
            # Not signed in yet: the password alone only opens the second step
            # (identity/mfa/flow.py). The sign-in limits are cleared only after that step,
            # so the password cannot be used to reset the count of second-factor guesses.
            mfa_flow.pending_start(request=self.request, user=user, next_url=self.get_redirect_url())
            login_second_factor_required(user=user, ip=ratelimit.client_ip(self.request))
            return HttpResponseRedirect(reverse("identity:mfa:verify"))
        session_login(request=self.request, user=user, amr=["pwd"])
        login_record_success(
            user=user, ip=ratelimit.client_ip(self.request), known_device=bool(throttle and throttle.device)
        )
        if throttle is not None:
            throttle.succeeded()
        response = HttpResponseRedirect(self.get_success_url())
        ratelimit.remember_device(self.request, response, user)
        return response


@never_cache
@require_http_methods(["GET", "POST"])
def logout_view(request: HttpRequest) -> HttpResponse:
    """GET asks for confirmation; only a POST (with its CSRF token) signs out."""
    if request.method == "POST":
        was_signed_in = request.user.is_authenticated
        session_logout(request=request, ip=ratelimit.client_ip(request))
        if was_signed_in:
            messages.success(request, _("Déconnexion effectuée. À bientôt !"))
        return redirect("identity:home")
    return render(request, "identity/logout.html")


# --- registration and email verification ---------------------------------------------------


@never_cache
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if request.method == "POST":
        form = RegistrationForm(request.POST)
        block = ratelimit.form_ip_block(request, "register")
        form.is_valid()
        if block is not None:
            form.add_error(None, too_many_attempts(block))
        if form.is_valid():
            data = form.cleaned_data
            account_register(
                email=data["email"],
                password=data["password"],
                given_name=data["given_name"],
                family_name=data["family_name"],
                preferred_language=translation.get_language() or "fr",
                ip=ratelimit.client_ip(request),
                notify_existing=ratelimit.form_email_allowed("register", data["email"]),
            )
            # Same page whether or not the address already had an account.
            return redirect(_with_next(reverse("identity:register-done"), next_url))
    else:
        form = RegistrationForm()
    return render(request, "identity/register.html", {"form": form, "next": next_url})


def register_done(request: HttpRequest) -> HttpResponse:
    next_url = _safe_next(request, request.GET.get("next"))
    return render(
        request,
        "identity/check_inbox.html",
        {"reason": "register", "login_url": _with_next(reverse("identity:login"), next_url)},
    )


@never_cache
@require_GET
def verify_email(request: HttpRequest, token: str) -> HttpResponse:
    # GET only (HEAD is refused) so that link checkers probing with HEAD do not spend it.
    result = email_verification_confirm(token=token, ip=ratelimit.client_ip(request))
    if result == VerificationResult.VERIFIED:
        return redirect("identity:email-verified")
    status = 410 if result in (VerificationResult.USED, VerificationResult.EXPIRED) else 404
    return render(request, "identity/verify_failed.html", {"reason": result}, status=status)


def email_verified(request: HttpRequest) -> HttpResponse:
    return render(request, "identity/email_verified.html")


@never_cache
@require_http_methods(["GET", "POST"])
def resend_verification(request: HttpRequest) -> HttpResponse:
    """A new verification link: for the signed-in resident's own address, or for an
    address typed in (same answer whether or not it has an unverified account)."""
    user = request.user if request.user.is_authenticated else None
    form = EmailForm(request.POST if request.method == "POST" and user is None else None)
    if request.method == "POST":
        block = ratelimit.form_ip_block(request, "resend")
        if user is not None:
            if block is not None:
                messages.error(request, too_many_attempts(block).messages[0])
            elif user.email_verified:
                messages.info(request, _("Votre adresse e-mail est déjà confirmée."))
            else:
                if ratelimit.form_email_allowed("resend", user.email):
                    email_verification_send(user=user, ip=ratelimit.client_ip(request))
                sent = _(
                    "Nous vous avons envoyé un nouveau lien de confirmation. "
                    "Pensez à regarder vos indésirables."
                )
                messages.success(request, sent)
            return redirect("identity:account")
        form.is_valid()
        if block is not None:
            form.add_error(None, too_many_attempts(block))
        if form.is_valid():
            email = form.cleaned_data["email"]
            if ratelimit.form_email_allowed("resend", email):
                target = user_by_email(email)
                if target is not None:
                    email_verification_send(user=target, ip=ratelimit.client_ip(request))
            return redirect("identity:resend-done")
    return render(request, "identity/resend.html", {"form": form})


def resend_done(request: HttpRequest) -> HttpResponse:
    return render(
        request, "identity/check_inbox.html", {"reason": "resend", "login_url": reverse("identity:login")}
    )


# --- password reset -----------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def password_reset(request: HttpRequest) -> HttpResponse:
    """Ask for a reset link. The answer never says whether the address has an account."""
    form = EmailForm(request.POST if request.method == "POST" else None)
    if request.method == "POST":
        block = ratelimit.form_ip_block(request, "password_reset")
        form.is_valid()
        if block is not None:
            form.add_error(None, too_many_attempts(block))
        if form.is_valid():
            email = form.cleaned_data["email"]
            if ratelimit.form_email_allowed("password_reset", email):
                user = user_for_password_reset(email)
                if user is not None:
                    password_reset_request(user=user, ip=ratelimit.client_ip(request))
            return redirect("identity:password-reset-done")
    return render(request, "registration/password_reset_form.html", {"form": form})


def password_reset_done(request: HttpRequest) -> HttpResponse:
    minutes = max(1, settings.PASSWORD_RESET_TIMEOUT // 60)
    return render(request, "registration/password_reset_done.html", {"reset_minutes": minutes})


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's view: checks the token (PASSWORD_RESET_TIMEOUT; spent once the password
    changes) and moves it out of the URL before the form is shown."""

    template_name = "registration/password_reset_confirm.html"
    form_class = SetPasswordForm  # type: ignore[assignment]
    success_url = reverse_lazy("identity:password-reset-complete")
    post_reset_login = False

    def form_valid(self, form: SetPasswordForm) -> HttpResponse:  # type: ignore[override]
        user = form.user
        user_password_reset(
            user=user, password=form.cleaned_data["new_password"], ip=ratelimit.client_ip(self.request)
        )
        # The resident proved they own the mailbox: let them in at once.
        ratelimit.clear_account(user.email)
        self.request.session.pop(auth_views.INTERNAL_RESET_SESSION_TOKEN, None)
        return HttpResponseRedirect(self.get_success_url())


def password_reset_complete(request: HttpRequest) -> HttpResponse:
    return render(request, "registration/password_reset_complete.html")


# --- password change ----------------------------------------------------------------------


@login_required
@never_cache
@sensitive_post_parameters("current_password", "new_password")
@require_http_methods(["GET", "POST"])
def password_change(request: HttpRequest) -> HttpResponse:
    form = PasswordChangeForm(request.user, request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        user_password_change(
            user=request.user, password=form.cleaned_data["new_password"], ip=ratelimit.client_ip(request)
        )
        # Keep this session; every other session of the resident ends.
        update_session_auth_hash(request, request.user)
        messages.success(request, _("Votre mot de passe a été modifié."))
        return redirect("identity:account")
    return render(request, "identity/password_change.html", {"form": form})
