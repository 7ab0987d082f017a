"""Account pages (minimal; completed by the accounts work)."""

from __future__ import annotations

from django.contrib.auth import logout
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import AuthenticationForm
from django.contrib.auth.views import LoginView as DjangoLoginView
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from identity.services import session_login


def home(request: HttpRequest) -> HttpResponse:
    return render(request, "identity/home.html")


@login_required
def account(request: HttpRequest) -> HttpResponse:
    return render(request, "identity/account.html")


class LoginView(DjangoLoginView):
    template_name = "identity/login.html"
    form_class = AuthenticationForm
    redirect_authenticated_user = False

    def form_valid(self, form: AuthenticationForm) -> HttpResponse:
        session_login(request=self.request, user=form.get_user(), amr=["pwd"])
        return redirect(self.get_success_url())


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    logout(request)
    return redirect("identity:login")
