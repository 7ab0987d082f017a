"""Staff pages for accounts, audit events and signing keys (partner clients: django-oauth-toolkit's admin)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from identity.models import AuditEvent, SigningKey, User


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
