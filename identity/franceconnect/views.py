"""FranceConnect pages: start, callback, first-use choice, linking, unlinking, sign-out.

Linking an existing account follows the one-time link flow described in
identity/franceconnect/services.py: "J'ai déjà un compte" → the dedicated sign-in page
(`LinkSignInView`, naming the FranceConnect identity) → perhaps the second factor → the
confirmation (`link_confirm`). Any other sign-in or sign-out in between drops the identity.

Thin: the protocol is in client.py, the writes in services.py. Every failure ends on the
sign-in page with a plain message (the email and password form keeps working), never a 500.
"""

from __future__ import annotations

import hmac
import logging
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, HttpResponseRedirect
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import translation
from django.utils.decorators import method_decorator
from django.utils.translation import gettext as _
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from common.ratelimit import client_ip
from common.redirects import safe_next
from identity import ratelimit
from identity.franceconnect import client, selectors, services
from identity.login_view import LoginView
from identity.request_user import request_user
from identity.services import AccountError, password_reset_request
from identity.sessions import SESSION_AUTH_TIME, device_label
from identity.signin import login_notify_new_device, session_logout

log = logging.getLogger(__name__)


# --- helpers --------------------------------------------------------------------------------------


def _same(a: str, b: str) -> bool:
    """Constant-time comparison that also takes non-ASCII input (str compare_digest raises)."""
    return hmac.compare_digest(a.encode("utf-8", "replace"), b.encode("utf-8", "replace"))


def _login_url(next_url: str = "", **extra: str) -> str:
    params = {key: value for key, value in {"next": next_url, **extra}.items() if value}
    url = reverse("identity:login")
    return f"{url}?{urlencode(params)}" if params else url


def _absolute(name: str) -> str:
    """Our URLs as registered at FranceConnect: built on the configured issuer, never on Host."""

    return settings.ISSUER + reverse(name)


def _callback_uri() -> str:
    return _absolute("identity:franceconnect:callback")


def _unavailable_message() -> str:
    return _(
        "FranceConnect est momentanément indisponible. "
        "Vous pouvez vous connecter avec votre adresse e-mail et votre mot de passe."
    )


def _failure_message(error: client.FranceConnectError) -> str:
    if isinstance(error, client.UpstreamUnavailable | client.NotConfigured) or error.code in {
        "bad_discovery",
        "bad_jwks",
        "bad_response",
    }:
        return _unavailable_message()
    if isinstance(error, client.UpstreamDenied):
        if error.detail == "access_denied":
            return _(
                "Vous avez annulé la connexion avec FranceConnect. Vous pouvez réessayer, "
                "ou vous connecter avec votre adresse e-mail et votre mot de passe."
            )
        return _(
            "FranceConnect n'a pas pu vous identifier. Vous pouvez réessayer, "
            "ou vous connecter avec votre adresse e-mail et votre mot de passe."
        )
    if error.code == "state":
        return _(
            "Votre demande de connexion avec FranceConnect a expiré ou n'est plus valable. "
            "Veuillez recommencer."
        )
    if error.code == "acr_too_low":
        return _(
            "Le niveau de garantie de l'identité transmise par FranceConnect est insuffisant "
            "pour ce service. Vous n'avez pas été connecté."
        )
    if error.code == "inactive":
        return _("Ce compte ne peut pas être utilisé pour le moment. Contactez le service aux habitants.")
    return _(
        "La réponse de FranceConnect n'a pas pu être vérifiée : par sécurité, vous n'avez pas été connecté. "
        "Vous pouvez réessayer, ou vous connecter avec votre adresse e-mail et votre mot de passe."
    )


def _fail(
    request: HttpRequest, error: client.FranceConnectError, *, next_url: str = "", user: Any = None
) -> HttpResponse:
    log.info("FranceConnect sign-in failed: %s", error.code)
    services.sign_in_record_failure(reason=error.code, ip=client_ip(request), user=user)
    messages.error(request, _failure_message(error))
    return redirect(_login_url(next_url))


def _done(request: HttpRequest, next_url: str) -> HttpResponse:
    return HttpResponseRedirect(safe_next(request, next_url) or reverse("identity:account"))


# --- sign-in --------------------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def start(request: HttpRequest) -> HttpResponse:
    """The "S'identifier avec FranceConnect" button: off to FranceConnect's authorize endpoint."""
    next_url = safe_next(request, request.POST.get("next") or request.GET.get("next"))
    if not selectors.is_enabled():
        messages.error(request, _("La connexion avec FranceConnect n'est pas proposée pour le moment."))
        return redirect(_login_url(next_url))
    config = client.Config.from_settings()
    try:
        config.require_credentials()
        provider = client.discover(config)
    except client.FranceConnectError as error:
        return _fail(request, error, next_url=next_url)
    state, nonce = services.auth_request_start(request=request, next_url=next_url)
    return HttpResponseRedirect(
        client.authorization_url(config, provider, redirect_uri=_callback_uri(), state=state, nonce=nonce)
    )


@never_cache
@require_GET
def callback(request: HttpRequest) -> HttpResponse:
    """FranceConnect sends the browser back here with a code (or an error) and our state."""
    auth_request = services.auth_request_pop(request=request)
    next_url = str(auth_request.get("next") or "") if auth_request else ""
    state = request.GET.get("state") or ""
    if auth_request is None or not state or not _same(state, str(auth_request.get("state", ""))):
        return _fail(request, client.VerificationFailed("state"), next_url=next_url)
    config = client.Config.from_settings()
    iss = request.GET.get("iss")
    if iss is not None and iss != config.issuer:  # RFC 9207, when the upstream sends it
        return _fail(request, client.VerificationFailed("iss_parameter"), next_url=next_url)
    if "error" in request.GET:
        error = (request.GET.get("error") or "")[:40]
        return _fail(request, client.UpstreamDenied(detail=error), next_url=next_url)
    try:
        auth = client.authenticate(
            config,
            code=request.GET.get("code") or "",
            redirect_uri=_callback_uri(),
            nonce=str(auth_request.get("nonce", "")),
        )
    except client.FranceConnectError as error:
        return _fail(request, error, next_url=next_url)
    except Exception as exc:  # whatever the upstream sent, the resident gets a page, not a 500
        log.error("FranceConnect callback: unexpected %s", type(exc).__name__, exc_info=settings.DEBUG)
        return _fail(request, client.VerificationFailed("unexpected"), next_url=next_url)

    link = selectors.link_for_sub(auth.sub)
    if link is not None:
        if not link.user.is_active:
            return _fail(request, client.FranceConnectError("inactive"), next_url=next_url, user=link.user)
        first_sign_in = link.user.last_login is None  # read before the sign-in sets it
        known = bool(ratelimit.known_device(request, link.user))
        services.franceconnect_sign_in(
            request=request,
            link=link,
            id_token=auth.id_token,
            acr=auth.acr,
            amr=list(auth.amr),
            ip=client_ip(request),
        )
        # Same security notification as a password sign-in from a browser never seen before.
        login_notify_new_device(
            user=link.user,
            known_device=known,
            first_sign_in=first_sign_in,
            device=device_label(request.META.get("HTTP_USER_AGENT", "")),
            ip=client_ip(request),
        )
        response = _done(request, next_url)
        ratelimit.remember_device(request, response, link.user)
        return response
    # First use of this identity here: the resident chooses what to do with it.
    services.pending_save(
        request=request, pending=services.PendingIdentity.from_authentication(auth, next_url=next_url)
    )
    return redirect("identity:franceconnect:choose")


# --- first use: create an account, or link an existing one ----------------------------------------


def _restart(request: HttpRequest) -> HttpResponse:
    messages.error(
        request,
        _("Votre connexion avec FranceConnect a expiré. Veuillez recommencer."),
    )
    return redirect(_login_url())


def _pending_or_restart(request: HttpRequest) -> services.PendingIdentity | HttpResponse:
    pending = services.pending_load(request)
    if pending is None:
        return _restart(request)
    return pending


def _with_flow(name: str, flow: str) -> str:
    return f"{reverse(name)}?{urlencode({'flow': flow})}"


@never_cache
@require_http_methods(["GET", "POST"])
def choose(request: HttpRequest) -> HttpResponse:
    pending = _pending_or_restart(request)
    if isinstance(pending, HttpResponse):
        return pending
    error = ""
    if request.method == "POST":
        action = request.POST.get("action")
        ip = client_ip(request)
        if action == "link":
            flow = services.pending_request_link(request=request, pending=pending, ip=ip)
            return redirect(_with_flow("identity:franceconnect:link-sign-in", flow))
        if action == "cancel":
            services.pending_clear(request=request)
            return redirect(_login_url(pending.next))
        if action == "create":
            try:
                user = services.account_create_from_franceconnect(
                    pending=pending, language=translation.get_language() or "fr", ip=ip
                )
            except AccountError:
                if pending.email:
                    error = _(
                        "Un compte existe déjà avec l'adresse e-mail transmise par FranceConnect. "
                        "Si c'est le vôtre, choisissez « J'ai déjà un compte » et connectez-vous "
                        "pour le lier à FranceConnect."
                    )
                else:
                    error = _(
                        "FranceConnect ne nous a pas transmis d'adresse e-mail : nous ne pouvons pas "
                        "créer votre compte ainsi. Créez un compte avec votre adresse e-mail, puis "
                        "liez-le à FranceConnect."
                    )
            except ValidationError:
                error = _(
                    "L'adresse e-mail transmise par FranceConnect ne peut pas être utilisée. Créez un compte "
                    "avec votre adresse e-mail, puis liez-le à FranceConnect."
                )
            except services.LinkError:
                error = _("Cette identité FranceConnect est déjà liée à un compte. Veuillez recommencer.")
            else:
                services.pending_clear(request=request)
                link = selectors.link_for_user(user)
                assert link is not None
                services.franceconnect_sign_in(
                    request=request,
                    link=link,
                    id_token=pending.id_token,
                    acr=pending.acr,
                    amr=pending.amr,
                    ip=ip,
                )
                messages.success(
                    request,
                    _(
                        "Votre compte a été créé. "
                        "Nous vous avons envoyé un e-mail pour confirmer votre adresse."
                    ),
                )
                return _done(request, pending.next)
    return render(
        request,
        "franceconnect/choose.html",
        {"pending": pending, "error": error},
        status=400 if error else 200,
    )


class LinkSignInView(LoginView):
    """The dedicated sign-in of the link flow: /franceconnect/lier/connexion/?flow=<id>.

    Names the FranceConnect identity waiting to be linked, and takes the password of the
    existing account (identity.login_view.LoginView: same limits, second factor, notifications).
    A correct password here announces the one sign-in the pending identity survives; the
    sign-in then goes on to the confirmation page of the same flow, whatever `next` says.
    """

    template_name = "franceconnect/link_sign_in.html"

    @method_decorator(never_cache)
    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        self.flow = str(request.GET.get("flow") or "")[:100]
        pending = services.pending_link_load(request=request, flow=self.flow)
        if pending is None or pending.link_user:
            return _restart(request)
        self.pending = pending
        return super().dispatch(request, *args, **kwargs)

    def get_initial(self) -> dict[str, Any]:
        initial = super().get_initial()
        if self.pending.email:
            initial.setdefault("username", self.pending.email)
        return initial

    def get_redirect_url(self) -> str:
        return _with_flow("identity:franceconnect:link", self.flow)

    def get_context_data(self, **kwargs: Any) -> dict[str, Any]:
        context = super().get_context_data(**kwargs)
        context["pending"] = self.pending
        return context

    def form_valid(self, form: Any) -> HttpResponse:
        if not services.pending_link_sign_in_started(
            request=self.request, pending=self.pending, user=form.get_user()
        ):
            return _restart(self.request)
        return super().form_valid(form)


@never_cache
@require_http_methods(["GET", "POST"])
def link_confirm(request: HttpRequest) -> HttpResponse:
    """After the dedicated sign-in of the link flow: confirm the link (module docstring)."""
    flow = str(request.GET.get("flow") or "")[:100]
    pending = services.pending_link_load(request=request, flow=flow)
    if pending is None:
        return _restart(request)
    auth_time = request.session.get(SESSION_AUTH_TIME)
    signed_in_for_this_flow = (
        request.user.is_authenticated
        and bool(pending.link_user)
        and pending.link_user == str(request.user.pk)
        and services.pending_link_signed_in_after_request(pending=pending, auth_time=auth_time)
        and services.SESSION_FC not in request.session
    )
    if not signed_in_for_this_flow:
        if pending.link_user:
            # Bound to another sign-in than this one: never carried over.
            services.pending_clear(request=request)
            return _restart(request)
        # No sign-in yet through the dedicated page: that is where the flow goes on.
        messages.info(request, _("Connectez-vous à votre compte existant pour le lier à FranceConnect."))
        return redirect(_with_flow("identity:franceconnect:link-sign-in", flow))
    if request.method == "POST":
        if request.POST.get("action") == "cancel":
            services.pending_clear(request=request)
            return redirect("identity:account")
        try:
            services.link_create(
                user=request_user(request), sub=pending.sub, how="password_sign_in", ip=client_ip(request)
            )
        except services.LinkError as error:
            services.pending_clear(request=request)
            if error.code == "user_already_linked":
                messages.error(
                    request,
                    _(
                        "Votre compte est déjà lié à une autre identité FranceConnect. "
                        "Déliez-la d'abord depuis la page « Mon compte »."
                    ),
                )
            else:
                messages.error(request, _("Cette identité FranceConnect est déjà liée à un autre compte."))
            return redirect("identity:account")
        services.pending_clear(request=request)
        # FranceConnect's session is open too: signing out here will end it.
        services.franceconnect_session_remember(request=request, id_token=pending.id_token, acr=pending.acr)
        messages.success(
            request,
            _(
                "Votre compte est maintenant lié à FranceConnect. "
                "Vous pourrez l'utiliser pour vous connecter."
            ),
        )
        return _done(request, pending.next)
    return render(request, "franceconnect/link_confirm.html", {"pending": pending})


# --- account page actions -------------------------------------------------------------------------


@never_cache
@require_POST
def unlink(request: HttpRequest) -> HttpResponse:
    if not request.user.is_authenticated:
        return redirect(_login_url(reverse("identity:account")))
    try:
        services.link_remove(user=request.user, ip=client_ip(request))
    except services.LinkError as error:
        if error.code == "no_other_sign_in":
            messages.error(
                request,
                _(
                    "Choisissez d'abord un mot de passe : sans lui, vous ne pourriez plus vous connecter "
                    "à votre compte après avoir délié FranceConnect."
                ),
            )
        else:
            messages.info(request, _("Votre compte n'est pas lié à FranceConnect."))
        return redirect("identity:account")
    messages.success(request, _("Votre compte n'est plus lié à FranceConnect."))
    return redirect("identity:account")


@never_cache
@require_POST
def password_setup(request: HttpRequest) -> HttpResponse:
    """An account created through FranceConnect has no password: email a link to choose one."""

    if not request.user.is_authenticated:
        return redirect(_login_url(reverse("identity:account")))
    user = request.user
    if ratelimit.form_email_allowed("password_reset", user.email):
        password_reset_request(user=user, ip=client_ip(request))
    messages.success(
        request,
        _("Nous vous avons envoyé un lien pour choisir un mot de passe. Pensez à regarder vos indésirables."),
    )
    return redirect("identity:account")


# --- sign-out -------------------------------------------------------------------------------------


@never_cache
@require_http_methods(["GET", "POST"])
def logout(request: HttpRequest) -> HttpResponse:
    """Sign out here, then at FranceConnect (end-session with id_token_hint and state).

    Our session ends before the browser leaves, so a resident who closes the tab at
    FranceConnect is signed out here all the same; the return page checks the state.
    """
    if request.method != "POST":
        if not request.user.is_authenticated:
            return redirect("identity:home")
        return render(request, "franceconnect/logout_confirm.html")
    id_token = selectors.session_id_token(request)
    was_signed_in = request.user.is_authenticated
    session_logout(request=request, ip=client_ip(request))
    if not id_token:
        if was_signed_in:
            messages.success(request, _("Déconnexion effectuée. À bientôt !"))
        return redirect("identity:home")
    config = client.Config.from_settings()
    try:
        provider = client.discover(config)
        state = services.logout_state_start(request=request)
        url = client.end_session_url(
            config,
            provider,
            id_token=id_token,
            state=state,
            post_logout_redirect_uri=_absolute("identity:franceconnect:logout-return"),
        )
    except client.FranceConnectError as error:
        log.info("FranceConnect end-session unavailable: %s", error.code)
        messages.warning(
            request,
            _(
                "Vous êtes déconnecté de votre compte. FranceConnect est momentanément indisponible : "
                "fermez votre navigateur pour terminer aussi votre session FranceConnect."
            ),
        )
        return redirect("identity:home")
    return HttpResponseRedirect(url)


@never_cache
@require_GET
def logout_return(request: HttpRequest) -> HttpResponse:
    expected = request.session.pop(services.SESSION_LOGOUT_STATE, None)
    state = request.GET.get("state") or ""
    if not isinstance(expected, str) or not state or not _same(expected, state):
        return redirect("identity:home")
    if request.user.is_authenticated:
        session_logout(request=request, ip=client_ip(request))
    return render(request, "franceconnect/logged_out.html")
