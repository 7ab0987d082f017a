"""Staff view of residents' second factors: metadata only (no secret, no code hash)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from identity.mfa.models import BackupCodeDevice, Passkey, TOTPDevice


class FactorAdmin(admin.ModelAdmin):
    list_select_related = ("user",)
    search_fields = ("user__email",)
    raw_id_fields = ("user",)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Factors are enrolled by the resident only (the secret must never pass through staff).
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # An operator-assisted reset goes through identity.mfa.services.factors_reset (the
        # "Réinitialiser la double authentification" action on residents, or the
        # reset_second_factor command), which audits the operator and emails the resident;
        # deleting here would leave no trace and send no email.
        return False


@admin.register(TOTPDevice)
class TOTPDeviceAdmin(FactorAdmin):
    list_display = (
        "id",
        "user",
        "name",
        "confirmed",
        "created_at",
        "last_used_at",
        "throttling_failure_count",
    )
    fields = ("user", "name", "confirmed", "created_at", "last_used_at", "throttling_failure_count")
    readonly_fields = fields


@admin.register(BackupCodeDevice)
class BackupCodeDeviceAdmin(FactorAdmin):
    list_display = ("id", "user", "created_at", "last_used_at", "throttling_failure_count")
    fields = ("user", "created_at", "last_used_at", "throttling_failure_count")
    readonly_fields = fields


@admin.register(Passkey)
class PasskeyAdmin(FactorAdmin):
    list_display = ("id", "user", "name", "backup_eligible", "sign_count", "created_at", "last_used_at")
    fields = (
        "user",
        "name",
        "backup_eligible",
        "sign_count",
        "aaguid",
        "transports",
        "created_at",
        "last_used_at",
    )
    readonly_fields = fields
