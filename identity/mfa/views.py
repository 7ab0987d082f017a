"""Second-factor pages: verification at sign-in (and step-up), passwordless passkey
sign-in, and the resident's factor management (/compte/securite/…). Thin: forms
validate, identity.mfa.services writes."""

from __future__ import annotations

from dataclasses import dataclass
from functools import wraps
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST
from django_otp import login as otp_login

from common import json_input
from common.problems import problem
from common.ratelimit import client_ip
from common.redirects import safe_next, with_next
from identity import ratelimit, reauth
from identity.forms import too_many_attempts
from identity.mfa import flow, passkeys, selectors, services, totp
from identity.mfa.forms import (
    BackupCodeForm,
    FactorNameForm,
    PasskeyNameForm,
    TOTPCodeForm,
    TOTPEnrolForm,
    throttled_error,
)
from identity.mfa.models import Kind, TOTPDevice
from identity.models import User
from identity.request_user import request_user
from identity.selectors import session_amr
from identity.sessions import device_label
from identity.signin import login_notify_new_device, login_record_success, session_login

SESSION_TOTP_ENROL = "mfa.totp_enrol"
SESSION_PASSKEY_HANDLE = "mfa.passkey_user_handle"
JSON_MAX_BYTES = 64 * 1024


# --- who is being verified ------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    user: User
    base_amr: list[str]
    next_url: str
    step_up: bool


def _subject(request: HttpRequest, next_value: str | None = None) -> Subject | None:
    """The half-authenticated resident (password just checked), else the signed-in
    resident asking for a stronger session (step-up), else None."""
    pending = flow.pending_get(request)
    if pending is not None:
        return Subject(pending.user, ["pwd"], pending.next_url, step_up=False)
    if request.user.is_authenticated:
        return Subject(
            request.user, session_amr(request) or ["pwd"], safe_next(request, next_value), step_up=True
        )
    return None


def _complete_sign_in(request: HttpRequest, subject: Subject, outcome: services.Outcome, kind: str) -> str:
    """Open (or upgrade) the session after a successful second factor; returns where to go."""
    user = subject.user
    first_sign_in = user.last_login is None  # read before session_login sets it
    flow.pending_clear(request)
    session_login(request=request, user=user, amr=flow.combined_amr(subject.base_amr, outcome.methods))
    # django-otp's own record of the device that verified this session (user.is_verified()).
    otp_login(request, outcome.device)
    ip = client_ip(request)
    services.login_second_factor_succeeded(
        user=user, kind=kind, factor_id=outcome.factor_id, step_up=subject.step_up, ip=ip
    )
    throttle = ratelimit.LoginThrottle(request, user.email, user)
    if not subject.step_up:
        login_record_success(user=user, ip=ip, known_device=bool(throttle.device))
        _notify_new_device(request, user, known=bool(throttle.device), first_sign_in=first_sign_in, ip=ip)
    throttle.succeeded()
    return subject.next_url or reverse("identity:account")


def _notify_new_device(
    request: HttpRequest, user: User, *, known: bool, first_sign_in: bool, ip: str
) -> None:
    login_notify_new_device(
        user=user,
        known_device=known,
        first_sign_in=first_sign_in,
        device=device_label(request.META.get("HTTP_USER_AGENT", "")),
        ip=ip,
    )


def _expired_redirect(request: HttpRequest, next_url: str = "") -> HttpResponse:
    messages.info(
        request, _("Votre connexion n'a pas abouti à temps. Saisissez à nouveau votre mot de passe.")
    )
    return redirect(with_next(reverse("identity:login"), next_url))


# --- verification (second step of sign-in, and step-up) ------------------------------------


@never_cache
@sensitive_post_parameters("totp-code", "backup-code")
@require_http_methods(["GET", "POST"])
def verify(request: HttpRequest) -> HttpResponse:
    subject = _subject(request, request.POST.get("next") or request.GET.get("next"))
    if subject is None:
        return _expired_redirect(request, safe_next(request, request.GET.get("next")))
    methods = selectors.available_methods(subject.user)
    if not (methods["totp"] or methods["passkey"]):
        # Only reachable by step-up (sign-in asks for a second factor only when there is one).
        return render(request, "mfa/no_factor.html", {"next": subject.next_url}, status=403)
    totp_form = TOTPCodeForm(prefix="totp")
    backup_form = BackupCodeForm(prefix="backup")
    submitted: TOTPCodeForm | BackupCodeForm | None = None
    if request.method == "POST":
        kind = request.POST.get("method", "")
        if kind == Kind.TOTP and methods["totp"]:
            submitted = totp_form = TOTPCodeForm(request.POST, prefix="totp")
        elif kind == Kind.BACKUP and methods["backup"]:
            submitted = backup_form = BackupCodeForm(request.POST, prefix="backup")
        if submitted is not None and submitted.is_valid():
            user = subject.user
            ip = client_ip(request)
            throttle = ratelimit.LoginThrottle(request, user.email, user)
            block = throttle.check()
            if block is not None:
                submitted.add_error(None, too_many_attempts(block))
            else:
                code = submitted.cleaned_data["code"]
                if kind == Kind.TOTP:
                    outcome = services.totp_verify(user=user, code=code, ip=ip)
                else:
                    outcome = services.backup_code_use(user=user, code=code, ip=ip)
                if outcome.ok:
                    target = _complete_sign_in(request, subject, outcome, kind)
                    return _remembered(request, redirect(target), user)
                if outcome.throttled:
                    submitted.add_error("code", throttled_error(outcome.retry_after))
                else:
                    services.login_second_factor_failed(user=user, kind=kind, ip=ip)
                    block = throttle.failed()
                    if block is not None:
                        submitted.add_error("code", too_many_attempts(block))
                    elif kind == Kind.TOTP:
                        submitted.add_error(
                            "code",
                            _(
                                "Ce code n'est pas valable. Saisissez le code affiché en ce moment "
                                "(il change toutes les 30 secondes) ; un code déjà utilisé est refusé."
                            ),
                        )
                    else:
                        submitted.add_error(
                            "code", _("Ce code de secours n'est pas valable ou a déjà été utilisé.")
                        )
    context = {
        "form": submitted,
        "totp_form": totp_form,
        "backup_form": backup_form,
        "methods": methods,
        "next": subject.next_url,
        "step_up": subject.step_up,
    }
    return render(request, "mfa/verify.html", context)


def _passkey_cannot_step_up(subject: Subject) -> bool:
    """A session opened with a passkey alone, without user verification (amr ["hwk"] or
    ["swk"]), is one factor: presenting a passkey again is not a second one (it may well be
    the same key). Its step-up takes the authenticator app or a backup code."""
    return subject.step_up and "mfa" not in subject.base_amr and bool({"hwk", "swk"} & set(subject.base_amr))


def _passkey_step_up_refused() -> str:
    return _(
        "Vous êtes connecté avec une clé d'accès : confirmez avec votre application "
        "d'authentification ou un code de secours."
    )


def _remembered(request: HttpRequest, response: HttpResponse, user: User) -> HttpResponse:
    """This browser is now a known device for the resident (identity.ratelimit)."""
    ratelimit.remember_device(request, response, user)
    return response


def _read_json(request: HttpRequest) -> dict[str, Any] | None:
    if len(request.body) > JSON_MAX_BYTES:
        return None
    try:
        data = json_input.loads(request.body or b"{}")
    except (ValueError, UnicodeDecodeError):
        return None
    return data if isinstance(data, dict) else None


def _bad(detail: str, status: int = 400) -> JsonResponse:
    return problem(status, _("Demande refusée"), detail)


@never_cache
@require_POST
def verify_passkey_options(request: HttpRequest) -> HttpResponse:
    subject = _subject(request)
    if subject is None:
        return _bad(_("Votre connexion n'a pas abouti à temps. Saisissez à nouveau votre mot de passe."), 401)
    if _passkey_cannot_step_up(subject):
        return _bad(_passkey_step_up_refused())
    allow = selectors.passkey_descriptors(subject.user)
    if not allow:
        return _bad(_("Aucune clé d'accès n'est enregistrée pour ce compte."))
    options, challenge = passkeys.authentication_options(allow=allow)
    passkeys.challenge_store(request, "verify", challenge)
    return JsonResponse(options)


@never_cache
@require_POST
def verify_passkey(request: HttpRequest) -> HttpResponse:
    data = _read_json(request)
    subject = _subject(
        request, (data or {}).get("next") if isinstance((data or {}).get("next"), str) else None
    )
    if subject is None:
        return _bad(_("Votre connexion n'a pas abouti à temps. Saisissez à nouveau votre mot de passe."), 401)
    if _passkey_cannot_step_up(subject):
        return _bad(_passkey_step_up_refused())
    challenge = passkeys.challenge_pop(request, "verify")
    if data is None or challenge is None:
        return _bad(_("La vérification a expiré. Réessayez."))
    user = subject.user
    ip = client_ip(request)
    throttle = ratelimit.LoginThrottle(request, user.email, user)
    block = throttle.check()
    if block is not None:
        return _bad(too_many_attempts(block).messages[0], 429)
    try:
        outcome = services.passkey_authenticate(
            credential=data.get("credential"), challenge=challenge, user=user, ip=ip
        )
    except passkeys.PasskeyError:
        outcome = services.Outcome(ok=False)
    if not outcome.ok:
        services.login_second_factor_failed(user=user, kind=Kind.PASSKEY, ip=ip)
        block = throttle.failed()
        if block is not None:
            return _bad(too_many_attempts(block).messages[0], 429)
        return _bad(_("Cette clé d'accès n'a pas été reconnue. Réessayez ou choisissez une autre méthode."))
    target = _complete_sign_in(request, subject, outcome, Kind.PASSKEY)
    return _remembered(request, JsonResponse({"redirect": target}), user)


# --- passwordless sign-in with a passkey ----------------------------------------------------


@never_cache
@require_POST
def passwordless_options(request: HttpRequest) -> HttpResponse:
    options, challenge = passkeys.authentication_options(allow=None)
    passkeys.challenge_store(request, "passwordless", challenge)
    return JsonResponse(options)


@never_cache
@require_http_methods(["GET", "POST"])
def passwordless(request: HttpRequest) -> HttpResponse:
    """Sign in with a discoverable passkey alone (GET: the page, POST: the assertion).

    A failed assertion cannot be a guess (it needs the private key), so it is refused
    without counting against the resident's password limits, which would only let a
    stranger lock them out.
    """
    if request.method == "GET":
        return render(request, "mfa/passwordless.html", {"next": safe_next(request, request.GET.get("next"))})
    data = _read_json(request)
    challenge = passkeys.challenge_pop(request, "passwordless")
    if data is None or challenge is None:
        return _bad(_("La vérification a expiré. Réessayez."))
    next_url = safe_next(request, data.get("next") if isinstance(data.get("next"), str) else None)
    ip = client_ip(request)
    try:
        outcome = services.passkey_authenticate(
            credential=data.get("credential"), challenge=challenge, user=None, ip=ip
        )
    except passkeys.PasskeyError:
        outcome = services.Outcome(ok=False)
    if not outcome.ok or outcome.user is None:
        services.login_passkey_failed(user=outcome.user, ip=ip)
        return _bad(
            _(
                "Cette clé d'accès n'a pas été reconnue. "
                "Connectez-vous avec votre mot de passe, puis ajoutez-la."
            )
        )
    user = outcome.user
    first_sign_in = user.last_login is None  # read before session_login sets it
    flow.pending_clear(request)
    session_login(request=request, user=user, amr=outcome.methods)
    if "mfa" in outcome.methods:
        otp_login(request, outcome.device)
    throttle = ratelimit.LoginThrottle(request, user.email, user)
    login_record_success(user=user, ip=ip, known_device=bool(throttle.device), method="passkey")
    _notify_new_device(request, user, known=bool(throttle.device), first_sign_in=first_sign_in, ip=ip)
    services.login_second_factor_succeeded(
        user=user, kind="passkey_passwordless", factor_id=outcome.factor_id, step_up=False, ip=ip
    )
    throttle.succeeded()
    return _remembered(request, JsonResponse({"redirect": next_url or reverse("identity:account")}), user)


# --- factor management ----------------------------------------------------------------------


def _change_allowed(request: HttpRequest) -> bool:
    """Once the account has a factor, changing its factors (adding, renaming, removing one,
    regenerating backup codes) needs a sign-in at the MFA level within the last 10 minutes
    (identity.reauth.recent_mfa): otherwise a one-factor session (password only,
    FranceConnect, a passkey without user verification) could give itself a factor and pass
    the step-up. The first factor of an account may be enrolled from a one-factor session:
    that is how residents start; it does not make that session MFA."""
    return not selectors.user_has_mfa(request_user(request)) or reauth.recent_mfa(request)


def factor_change_guard(view: Any = None, *, api: bool = False) -> Any:
    """Checked on every request (GET and POST alike: a factor may appear in between)."""

    def decorate(inner: Any) -> Any:
        @wraps(inner)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            if _change_allowed(request):
                return inner(request, *args, **kwargs)
            if api:
                return reauth.recent_problem(request, reverse("identity:mfa:factors"))
            return reauth.reauth_redirect(request)

        return wrapper

    return decorate(view) if view is not None else decorate


def _after_enrolment(request: HttpRequest) -> str:
    """Where to go once a factor is added: a staff page that sent here to enrol (through
    the step-up with the new factor), else the factor list."""
    return reauth.after_enrol_url(request) or reverse("identity:mfa:factors")


@login_required
@never_cache
def factors(request: HttpRequest) -> HttpResponse:
    return render(
        request,
        "mfa/factors.html",
        {
            "factors": selectors.factors_of(request_user(request)),
            "backup": selectors.backup_codes_status(request_user(request)),
            "has_mfa": selectors.user_has_mfa(request_user(request)),
        },
    )


@login_required
@never_cache
@sensitive_post_parameters("code")
@require_http_methods(["GET", "POST"])
@factor_change_guard
def totp_add(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    device = None
    device_id = request.session.get(SESSION_TOTP_ENROL)
    if device_id is not None:
        device = TOTPDevice.objects.filter(pk=device_id, user=user, confirmed=False).first()
    if device is None:
        device, _key = services.totp_enrolment_start(user=user)
        request.session[SESSION_TOTP_ENROL] = device.pk
    form = TOTPEnrolForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        outcome = services.totp_enrolment_confirm(
            user=user,
            device_id=device.pk,
            code=form.cleaned_data["code"],
            name=form.cleaned_data["name"],
            ip=client_ip(request),
        )
        if outcome.ok:
            request.session.pop(SESSION_TOTP_ENROL, None)
            messages.success(request, _("Votre application d'authentification est activée."))
            return redirect(_after_enrolment(request))
        if outcome.throttled:
            form.add_error("code", throttled_error(outcome.retry_after))
        else:
            form.add_error(
                "code",
                _(
                    "Ce code ne correspond pas. Vérifiez que vous avez bien ajouté ce compte dans "
                    "l'application, puis saisissez le code qu'elle affiche en ce moment."
                ),
            )
    key = device.secret()
    uri = totp.provisioning_uri(key, account=user.email, issuer=_("Compte unique métropolitain"))
    return render(
        request,
        "mfa/totp_add.html",
        {
            "form": form,
            "qr_code": totp.qr_code_data_uri(uri),
            "secret_grouped": totp.grouped(totp.base32(key)),
            "otpauth_uri": uri,
        },
    )


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
def backup_codes(request: HttpRequest) -> HttpResponse:
    has_mfa = selectors.user_has_mfa(request_user(request))
    codes: list[str] = []
    if request.method == "POST":
        if has_mfa and not reauth.recent_mfa(request):
            # New codes are shown on this page and the old ones stop working: never for a
            # session weaker than a recent MFA sign-in.
            return reauth.reauth_redirect(request)
        if not has_mfa:
            messages.error(
                request, _("Ajoutez d'abord une application d'authentification ou une clé d'accès.")
            )
            return redirect("identity:mfa:factors")
        codes = services.backup_codes_generate(user=request_user(request), ip=client_ip(request))
    return render(
        request,
        "mfa/backup_codes.html",
        {"codes": codes, "backup": selectors.backup_codes_status(request_user(request)), "has_mfa": has_mfa},
    )


@login_required
@never_cache
@factor_change_guard
def passkey_add(request: HttpRequest) -> HttpResponse:
    return render(request, "mfa/passkey_add.html", {"form": PasskeyNameForm()})


@login_required
@never_cache
@require_POST
@factor_change_guard(api=True)
def passkey_register_options(request: HttpRequest) -> HttpResponse:
    user = request_user(request)
    handle = services.passkey_user_handle(user=user)
    options, challenge = passkeys.registration_options(
        user_handle=handle,
        user_name=user.email,
        display_name=user.full_name,
        exclude=selectors.passkey_descriptors(user),
    )
    passkeys.challenge_store(request, "register", challenge)
    request.session[SESSION_PASSKEY_HANDLE] = handle.hex()
    return JsonResponse(options)


@login_required
@never_cache
@require_POST
@factor_change_guard(api=True)
def passkey_register(request: HttpRequest) -> HttpResponse:
    data = _read_json(request)
    challenge = passkeys.challenge_pop(request, "register")
    handle_hex = request.session.pop(SESSION_PASSKEY_HANDLE, None)
    if data is None or challenge is None or not handle_hex:
        return _bad(_("L'enregistrement a expiré. Réessayez."))
    given_name = data.get("name")
    name = given_name if isinstance(given_name, str) else ""
    try:
        services.passkey_register(
            user=request_user(request),
            credential=data.get("credential"),
            challenge=challenge,
            user_handle=bytes.fromhex(handle_hex),
            name=name,
            ip=client_ip(request),
        )
    except services.FactorError:
        return _bad(_("Cette clé d'accès est déjà enregistrée."))
    except passkeys.PasskeyError:
        return _bad(_("La clé d'accès n'a pas pu être enregistrée. Réessayez."))
    messages.success(request, _("Votre clé d'accès est enregistrée."))
    return JsonResponse({"redirect": _after_enrolment(request)})


def _factor_or_404(request: HttpRequest, kind: str, factor_id: int) -> selectors.FactorRow:
    row = selectors.factor_of(request_user(request), kind, factor_id)
    if row is None:
        raise Http404
    return row


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
@factor_change_guard
def factor_rename(request: HttpRequest, kind: str, factor_id: int) -> HttpResponse:
    row = _factor_or_404(request, kind, factor_id)
    form = FactorNameForm(request.POST if request.method == "POST" else None, initial={"name": row.name})
    if request.method == "POST" and form.is_valid():
        services.factor_rename(
            user=request_user(request),
            kind=kind,
            factor_id=factor_id,
            name=form.cleaned_data["name"],
            ip=client_ip(request),
        )
        messages.success(request, _("Le nom a été modifié."))
        return redirect("identity:mfa:factors")
    return render(request, "mfa/factor_rename.html", {"form": form, "factor": row})


@login_required
@never_cache
@require_http_methods(["GET", "POST"])
@factor_change_guard
def factor_remove(request: HttpRequest, kind: str, factor_id: int) -> HttpResponse:
    row = _factor_or_404(request, kind, factor_id)
    last = services.factor_is_last(user=request_user(request), kind=kind, factor_id=factor_id)
    if last and reauth.is_staff_member(request.user):
        # Staff work with two factors (identity.reauth): they replace a factor, never drop the last.
        messages.error(
            request,
            _(
                "Les comptes du personnel doivent garder un second facteur : "
                "ajoutez-en un autre avant de retirer celui-ci."
            ),
        )
        return redirect("identity:mfa:factors")
    if request.method == "POST":
        services.factor_remove(
            user=request_user(request), kind=kind, factor_id=factor_id, ip=client_ip(request)
        )
        messages.success(request, _("« %(name)s » a été retiré.") % {"name": row.name})
        return redirect("identity:mfa:factors")
    return render(request, "mfa/factor_remove.html", {"factor": row, "last": last})
