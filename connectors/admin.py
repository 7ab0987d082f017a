from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.http import HttpRequest
from django.utils.translation import gettext_lazy as _

from connectors.models import OutboxMessage
from connectors.services import outbox_replay


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "partner", "status", "attempts", "next_attempt_at", "last_error")
    list_filter = ("status", "kind", "partner")
    readonly_fields = [field.name for field in OutboxMessage._meta.fields]
    actions = ["replay"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    @admin.action(description=_("Remettre en file les messages abandonnés"))
    def replay(self, request: HttpRequest, queryset: Any) -> None:
        count = 0
        for message in queryset.filter(status=OutboxMessage.Status.DEAD):
            outbox_replay(message_id=message.pk)
            count += 1
        self.message_user(
            request, _("%(count)d message(s) remis en file.") % {"count": count}, messages.SUCCESS
        )
