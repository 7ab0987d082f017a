"""Read-only staff pages for the catalogue, notices, ledger events and signed tree heads.

Nothing here can add, change or delete: purposes and notices change through
`consent.services` (DPO console), and the ledger never changes. The pseudonym-to-account
table (`Subject`) is deliberately not exposed here: reading it is a read of personal data
that the DPO console logs.
"""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from consent.models import LedgerEvent, PrivacyNotice, Purpose, TreeHead


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Purpose)
class PurposeAdmin(ReadOnlyAdmin):
    list_display = (
        "code",
        "title_fr",
        "gdpr_article",
        "requires_consent",
        "consent_lifetime_days",
        "is_active",
    )
    list_filter = ("requires_consent", "is_active", "gdpr_article")
    search_fields = ("code", "title_fr", "title_en")


@admin.register(PrivacyNotice)
class PrivacyNoticeAdmin(ReadOnlyAdmin):
    list_display = ("__str__", "version", "material", "published_at", "content_sha256")
    list_filter = ("material",)


@admin.register(LedgerEvent)
class LedgerEventAdmin(ReadOnlyAdmin):
    list_display = ("seq", "event_type", "purpose_code", "collection_method", "actor_type", "occurred_at")
    list_filter = ("event_type", "collection_method", "actor_type")
    search_fields = ("=id", "=subject__id", "purpose_code", "partner_client_id")
    exclude = ("details_ciphertext",)
    ordering = ("-seq",)


@admin.register(TreeHead)
class TreeHeadAdmin(ReadOnlyAdmin):
    list_display = ("tree_size", "timestamp", "kid")
