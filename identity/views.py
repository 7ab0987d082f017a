"""Resident pages: home, sign-out (sign-in is identity.login_view), registration, email verification,
password reset and change, account. Thin: forms validate, services write."""

from __future__ import annotations

from datetime import date

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import logout as django_logout
from django.contrib.auth import update_session_auth_hash
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import ngettext
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.ratelimit import client_ip
from common.redirects import safe_next, with_next
from identity import account_sections, ratelimit
from identity.forms import (
    EmailForm,
    PasswordChangeForm,
    RegistrationForm,
    SetPasswordForm,
    too_many_attempts,
)
from identity.franceconnect import views as franceconnect_views
from identity.franceconnect.selectors import logout_url_for
from identity.not_me import NotMeResult, not_me_check
from identity.request_user import request_user
from identity.selectors import user_by_email, user_for_password_reset
from identity.services import (
    VerificationResult,
    account_not_me_confirm,
    account_register,
    email_verification_confirm,
    email_verification_send,
    password_reset_request,
    password_reset_request_unknown,
    user_password_change,
    user_password_reset,
)
from identity.sessions import (
    EndReason,
    browser_session_for_request,
    session_revoke,
    sessions_active,
    sessions_end_all,
)
from identity.signin import session_logout


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "identity/home.html")


# The day the accessibility statement was written; change it with the statement.
ACCESSIBILITY_STATEMENT_DATE = date(2026, 12, 5)


@require_GET
def accessibility_statement(request: HttpRequest) -> HttpResponse:
    context = {
        "statement_date": ACCESSIBILITY_STATEMENT_DATE,
        "controller": settings.CONSENT_CONTROLLER,
        "contact_email": settings.ACCESSIBILITY_CONTACT_EMAIL,
    }
    return render(request, "identity/accessibility.html", context)


@login_required
def account(request: HttpRequest) -> HttpResponse:
    """The summary of Mon compte: each registered section says what it holds (what we know,
    who received it, what the resident allowed) and links to its page."""
    resident = request_user(request)
    sections = [
        {
            "key": section.key,
            "title": section.title,
            "lines": section.summary(resident),
            "url": reverse(section.url_name),
            "link": section.link or section.title,
        }
        for section in account_sections.sections()
        if section.key != "summary"
    ]
    return render(request, "identity/account.html", {"resident": resident, "sections": sections})


@never_cache
@require_http_methods(["GET", "POST"])
def logout_view(request: HttpRequest) -> HttpResponse:
    """GET asks for confirmation; only a POST (with its CSRF token) signs out.

    A session opened through FranceConnect is ended there too (issue 5): the FranceConnect
    sign-out signs out here first, then sends the browser to FranceConnect's end-session.
    """
    if request.method == "POST":
        if logout_url_for(request):
            return franceconnect_views.logout(request)
        was_signed_in = request.user.is_authenticated
        session_logout(request=request, ip=client_ip(request))
        if was_signed_in:
            messages.success(request, _("Déconnexion effectuée. À bientôt !"))
        return redirect("identity:home")
    return render(request, "identity/logout.html")


# --- registration and email verification ---------------------------------------------------


@never_cache
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
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
                ip=client_ip(request),
                notify_existing=ratelimit.form_email_allowed("register", data["email"]),
            )
            # Same page whether or not the address already had an account.
            return redirect(with_next(reverse("identity:register-done"), next_url))
    else:
        form = RegistrationForm()
    return render(request, "identity/register.html", {"form": form, "next": next_url})


def register_done(request: HttpRequest) -> HttpResponse:
    next_url = safe_next(request, request.GET.get("next"))
    return render(
        request,
        "identity/check_inbox.html",
        {"reason": "register", "login_url": with_next(reverse("identity:login"), next_url)},
    )


@never_cache
@require_GET
def verify_email(request: HttpRequest, token: str) -> HttpResponse:
    # GET only (HEAD is refused) so that link checkers probing with HEAD do not spend it.
    result = email_verification_confirm(token=token, ip=client_ip(request))
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
                    email_verification_send(user=user, ip=client_ip(request))
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
                    email_verification_send(user=target, ip=client_ip(request))
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
                    password_reset_request(user=user, ip=client_ip(request))
                else:
                    password_reset_request_unknown(
                        email=email, language=translation.get_language() or "fr", ip=client_ip(request)
                    )
            return redirect("identity:password-reset-done")
    return render(request, "registration/password_reset_form.html", {"form": form})


def password_reset_done(request: HttpRequest) -> HttpResponse:
    minutes = max(1, settings.PASSWORD_RESET_TIMEOUT // 60)
    return render(request, "registration/password_reset_done.html", {"reset_minutes": minutes})


class PasswordResetConfirmView(auth_views.PasswordResetConfirmView):
    """Django's view: checks the token (PASSWORD_RESET_TIMEOUT; spent once the password
    changes) and moves it out of the URL before the form is shown."""

    template_name = "registration/password_reset_confirm.html"
    form_class = SetPasswordForm
    success_url = reverse_lazy("identity:password-reset-complete")
    post_reset_login = False

    def form_valid(self, form: SetPasswordForm) -> HttpResponse:
        user = form.user
        user_password_reset(user=user, password=form.cleaned_data["new_password"], ip=client_ip(self.request))
        if self.request.user.is_authenticated and self.request.user.pk == user.pk:
            # Every session of the resident just ended, this browser's too (its stored
            # session is gone): start a clean anonymous one.
            django_logout(self.request)
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
    form = PasswordChangeForm(request_user(request), request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        user_password_change(
            user=request_user(request),
            password=form.cleaned_data["new_password"],
            ip=client_ip(request),
            keep_session=browser_session_for_request(request),
        )
        # Keep this session; every other session of the resident ends.
        update_session_auth_hash(request, request_user(request))
        messages.success(request, _("Votre mot de passe a été modifié."))
        return redirect("identity:account")
    return render(request, "identity/password_change.html", {"form": form})


# --- browser sessions ----------------------------------------------------------------------


@login_required
@never_cache
@require_GET
def sessions_page(request: HttpRequest) -> HttpResponse:
    """The resident's open sessions: device, opened, last seen, partners served in each."""
    current = browser_session_for_request(request)
    rows = [
        {
            "id": record.pk,
            "device": record.device or "?",
            "created_at": record.created_at,
            "last_seen_at": record.last_seen_at,
            "current": current is not None and record.pk == current.pk,
            "services": sorted({link.client.name for link in record.session_clients.all()}),
        }
        for record in sessions_active(user=request_user(request))
    ]
    rows.sort(key=lambda row: not row["current"])  # this browser first
    return render(
        request,
        "identity/sessions.html",
        {"sessions": rows, "others": sum(1 for row in rows if not row["current"])},
    )


@login_required
@never_cache
@require_POST
def session_end_view(request: HttpRequest, session_id: int) -> HttpResponse:
    """End one session (POST + CSRF). Ending this browser's own session signs it out."""
    ip = client_ip(request)
    current = browser_session_for_request(request)
    if current is not None and current.pk == session_id:
        session_logout(request=request, ip=ip)
        messages.success(request, _("Déconnexion effectuée. À bientôt !"))
        return redirect("identity:home")
    record = next(
        (item for item in sessions_active(user=request_user(request)) if item.pk == session_id), None
    )
    if record is not None and session_revoke(user=request_user(request), sid=record.sid, ip=ip):
        messages.success(request, _("La session a été déconnectée."))
    else:
        messages.info(request, _("Cette session était déjà terminée."))
    return redirect("identity:sessions")


@login_required
@never_cache
@require_POST
def sessions_end_all_view(request: HttpRequest) -> HttpResponse:
    """The "Se déconnecter partout" button: every session, or every other one (keep_current=1)."""
    ip = client_ip(request)
    user = request_user(request)
    if request.POST.get("keep_current") == "1":
        current = browser_session_for_request(request)
        count = sessions_end_all(user=user, except_current=current, ip=ip)
        messages.success(
            request,
            ngettext(
                "%(count)d autre session a été déconnectée.",
                "%(count)d autres sessions ont été déconnectées.",
                count,
            )
            % {"count": count},
        )
        return redirect("identity:sessions")
    sessions_end_all(user=user, reason=EndReason.SIGN_OUT_EVERYWHERE, ip=ip)
    # This browser's stored session is gone with the others: start a clean anonymous one.
    django_logout(request)
    messages.success(request, _("Vous êtes déconnecté de tous vos appareils."))
    return redirect("identity:home")


# --- "Ce n'était pas vous ?" ---------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def not_me(request: HttpRequest, token: str) -> HttpResponse:
    """The link of every security email. GET only shows what will happen (link checkers
    and mail scanners open links); the POST button does it. Works signed out."""
    if request.method == "POST":
        outcome = account_not_me_confirm(token=token, ip=client_ip(request))
        if outcome.result == NotMeResult.DONE:
            if request.user.is_authenticated and outcome.user and request.user.pk == outcome.user.pk:
                django_logout(request)  # this browser's stored session has just been deleted
            return render(
                request,
                "identity/not_me_done.html",
                {"reset_sent": outcome.reset_sent, "factor_removed": outcome.factor_removed},
            )
        check = outcome
    else:
        check = not_me_check(token=token)
        if check.result == NotMeResult.VALID:
            return render(request, "identity/not_me_confirm.html")
    status = 410 if check.result in (NotMeResult.USED, NotMeResult.EXPIRED) else 404
    return render(request, "identity/not_me_failed.html", {"reason": check.result}, status=status)
