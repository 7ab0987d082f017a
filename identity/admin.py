"""Staff pages for accounts, audit events and signing keys (partner clients: django-oauth-toolkit's admin)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.translation import gettext_lazy as _
from django.utils.translation import ngettext

from common.ratelimit import client_ip
from identity import reauth
from identity.forms import ResetSecondFactorForm
from identity.mfa.services import FactorError, factors_reset, operator_can_reset_second_factor
from identity.models import AuditEvent, SigningKey, User
from identity.request_user import request_user


def _sudo(request: HttpRequest) -> HttpResponse | None:
    """None when the operator signed in with the second factor within 10 minutes, else the
    redirect to re-authenticate (and back)."""
    if reauth.recent_mfa(request):
        return None
    reauth.staff_refused_audit(request, reason=reauth.PROBLEM_RECENT_REQUIRED)
    return reauth.reauth_redirect(request)


# Deleting an account in the admin is an erasure (GDPR Art. 17): consent.erasure.erasure_now,
# registered by consent's ready() (identity, below consent, does not import it). Never a bare
# cascade: sessions end, partners are told, the consent subject key is destroyed, audited.
AccountEraser = Callable[..., Any]  # (*, user: User, operator: User, ip: str) -> Any
_account_eraser: AccountEraser | None = None


def register_account_eraser(eraser: AccountEraser) -> None:
    global _account_eraser
    _account_eraser = eraser


def _erase_account(request: HttpRequest, user: User) -> None:
    if _account_eraser is None:
        raise PermissionDenied("no account eraser registered: is the consent app installed?")
    _account_eraser(user=user, operator=request_user(request), ip=client_ip(request))


@admin.register(User)
class UserAdmin(DjangoUserAdmin):
    ordering = ("email",)
    list_display = ("email", "given_name", "family_name", "email_verified", "is_active", "created_at")
    list_filter = ("email_verified", "is_active", "is_staff")
    search_fields = ("email", "given_name", "family_name")
    readonly_fields = ("id", "created_at", "updated_at", "last_login")
    fieldsets = (
        (None, {"fields": ("id", "email", "email_verified", "password")}),
        (_("Identité"), {"fields": ("given_name", "family_name", "preferred_language")}),
        (_("Droits"), {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        (_("Dates"), {"fields": ("created_at", "updated_at", "last_login")}),
    )
    add_fieldsets = ((None, {"classes": ("wide",), "fields": ("email", "password1", "password2")}),)
    actions = ["reset_second_factor"]

    # Sudo mode (identity.reauth): creating an account, saving a change (rights, groups,
    # staff status), deleting one or setting its password need the operator's sign-in with
    # the second factor within the last 10 minutes; reading the pages does not.

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        return _sudo(request) or super().add_view(request, form_url, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        if request.method == "POST":
            return _sudo(request) or super().change_view(request, object_id, form_url, extra_context)
        return super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        if request.method == "POST":
            return _sudo(request) or super().delete_view(request, object_id, extra_context)
        return super().delete_view(request, object_id, extra_context)

    def delete_model(self, request: HttpRequest, obj: User) -> None:
        """The delete page (after the sudo check of delete_view): the erasure, at once, no
        grace period (an operator acts on a request already checked; docs/dpo.md)."""
        _erase_account(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        """The "delete selected" action: the same erasure, account by account."""
        if not reauth.recent_mfa(request):
            reauth.staff_refused_audit(request, reason=reauth.PROBLEM_RECENT_REQUIRED)
            raise PermissionDenied
        for user in list(queryset):
            _erase_account(request, user)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        return _sudo(request) or super().user_change_password(request, id, form_url)

    def get_actions(self, request: HttpRequest) -> dict[str, Any]:
        actions = super().get_actions(request)
        if not operator_can_reset_second_factor(request.user):
            actions.pop("reset_second_factor", None)
        return actions

    @admin.action(description=_("Réinitialiser la double authentification"))
    def reset_second_factor(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        """Lost second factor: remove every factor and backup code of the selected residents
        (identity.mfa.services.factors_reset: sessions ended, resident emailed, audited with
        the operator). A confirmation page asks for a short reason first."""

        if not operator_can_reset_second_factor(request.user):
            raise PermissionDenied
        refused = _sudo(request)  # removing someone's factors: the operator's recent MFA sign-in
        if refused is not None:
            return refused
        form = ResetSecondFactorForm(request.POST if request.POST.get("confirm") == "yes" else None)
        if form.is_bound and form.is_valid():
            done = 0
            for resident in queryset:
                try:
                    factors_reset(
                        user=resident,
                        operator=request_user(request),
                        reason=form.cleaned_data["reason"],
                        ip=client_ip(request),
                    )
                except FactorError as exc:
                    self.message_user(request, f"{resident.pk}: {exc}", messages.ERROR)
                else:
                    done += 1
            self.message_user(
                request,
                ngettext(
                    "Double authentification réinitialisée pour %(count)d résident.",
                    "Double authentification réinitialisée pour %(count)d résidents.",
                    done,
                )
                % {"count": done},
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": _("Réinitialiser la double authentification"),
            "opts": self.model._meta,
            "residents": queryset,
            "form": form,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "identity/admin/reset_second_factor.html", context)


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "event", "subject_user_id", "acting_user_id", "client_id")
    list_filter = ("event",)
    search_fields = ("subject_user_id", "acting_user_id", "client_id")


@admin.register(SigningKey)
class SigningKeyAdmin(ReadOnlyAdmin):
    list_display = ("kid", "algorithm", "active_from", "retired_at", "expires_at")
    exclude = ("private_key_encrypted",)
