"""Staff view of FranceConnect links (read-only: links are made and removed by residents)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from identity.franceconnect.models import FranceConnectLink


@admin.register(FranceConnectLink)
class FranceConnectLinkAdmin(admin.ModelAdmin):
    list_display = ("id", "user", "linked_at", "last_used_at")
    readonly_fields = ("user", "sub", "linked_at", "last_used_at")
    search_fields = ("=user__email", "=sub")
    date_hierarchy = "linked_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
