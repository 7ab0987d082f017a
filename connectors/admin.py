from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from connectors import monitoring, registry
from connectors.models import OutboxMessage, PartnerConnector, PartnerLink
from connectors.sealing import Unsealable, open_secrets, seal_secrets
from connectors.services import outbox_replay, outbox_replay_partner
from identity import reauth
from identity.audit import audit_log
from identity.request_user import request_user


@admin.register(OutboxMessage)
class OutboxMessageAdmin(admin.ModelAdmin):
    list_display = ("created_at", "kind", "partner", "status", "attempts", "next_attempt_at", "last_error")
    list_filter = ("status", "kind", "partner")
    readonly_fields = [field.name for field in OutboxMessage._meta.fields]
    actions = ["replay"]
    change_list_template = "admin/connectors/outboxmessage_change_list.html"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_urls(self) -> list[URLPattern]:
        partners = path(
            "partenaires/",
            self.admin_site.admin_view(self.partners_view),
            name="connectors_outboxmessage_partners",
        )
        return [partners, *super().get_urls()]

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        # The replay action is a sensitive change: sudo mode, as for partner connectors.
        if request.method == "POST" and request.POST.get("action"):
            return _sudo(request) or super().changelist_view(request, extra_context)
        return super().changelist_view(request, extra_context)

    @staticmethod
    def _partners_post(request: HttpRequest) -> None:
        partner = request.POST.get("partner", "")
        if request.POST.get("do") == "health":
            partner_connector = get_object_or_404(PartnerConnector, pk=request.POST.get("connector"))
            result = monitoring.health_check(partner_connector)
            level = messages.SUCCESS if result.ok else messages.ERROR
            messages.add_message(request, level, f"{partner_connector}: {result.detail}")
            return
        count = outbox_replay_partner(
            partner=partner,
            kind=request.POST.get("kind", ""),
            dead_only=request.POST.get("dead_only") == "1",
            acting_user=request_user(request),
        )
        messages.success(
            request,
            _("%(count)d message(s) remis en file pour %(partner)s.") % {"count": count, "partner": partner},
        )

    @method_decorator(require_http_methods(["GET", "POST"]))
    def partners_view(self, request: HttpRequest) -> HttpResponse:
        """Per partner: connector health (cached; checked on demand), queue depth, oldest
        pending message, failures, dead letters; replay and health check in sudo mode."""
        now = timezone.now()
        rows = [(row, row.oldest_pending_age(now)) for row in monitoring.partner_rows()]
        context = {
            **self.admin_site.each_context(request),
            "title": _("Partenaires : files et santé des connecteurs"),
            "opts": self.model._meta,
            "rows": rows,
            "cache_seconds": monitoring.HEALTH_CACHE_SECONDS,
        }
        if request.method == "POST":
            refused = _sudo(request)
            if refused is not None:
                return refused
            self._partners_post(request)
            return redirect("admin:connectors_outboxmessage_partners")
        return TemplateResponse(request, "admin/connectors/partners.html", context)

    @admin.action(description=_("Remettre en file les messages abandonnés"))
    def replay(self, request: HttpRequest, queryset: Any) -> None:
        count = 0
        for message in queryset.filter(status=OutboxMessage.Status.DEAD):
            outbox_replay(message_id=message.pk)
            count += 1
        self.message_user(
            request, _("%(count)d message(s) remis en file.") % {"count": count}, messages.SUCCESS
        )


class PartnerConnectorForm(forms.ModelForm):
    """The secrets are write-only: typed in, sealed, never shown back (an empty field keeps them)."""

    secrets_input = forms.JSONField(
        required=False,
        label=_("Secrets (écriture seule)"),
        help_text=_(
            'Objet JSON, par exemple {"login_password": "…"}. Jamais réaffichés : laissez vide '
            "pour garder les secrets enregistrés, saisissez {} pour les effacer."
        ),
        widget=forms.Textarea(attrs={"rows": 3, "autocomplete": "off"}),
    )

    class Meta:
        model = PartnerConnector
        fields = ("client", "kind", "label", "enabled", "config")

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["kind"] = forms.ChoiceField(
            label=_("type"), choices=[(kind, kind) for kind in registry.kinds()]
        )
        self.initial.pop("secrets_input", None)

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        cls = registry.connector_class(data.get("kind") or "")
        secrets = data.get("secrets_input")
        if secrets is not None and not (
            isinstance(secrets, dict) and all(isinstance(v, str) for v in secrets.values())
        ):
            self.add_error("secrets_input", _("Un objet JSON dont les valeurs sont des chaînes."))
            return data
        if cls is None:
            return data
        config = data.get("config") or {}
        if not isinstance(config, dict):
            self.add_error("config", _("Un objet JSON."))
            return data
        if secrets is None and self.instance.pk is not None:
            try:
                secrets = open_secrets(self.instance.pk, self.instance.secrets_sealed)
            except Unsealable:
                secrets = {}
        for problem in cls.check_config(config, secrets or {}):
            self.add_error("config", problem)
        return data


@admin.register(PartnerConnector)
class PartnerConnectorAdmin(admin.ModelAdmin):
    """Operators configure a partner's connector. Sudo mode (identity.reauth) as for partner
    clients: adding, changing or deleting needs a sign-in at the MFA level within 10 minutes."""

    form = PartnerConnectorForm
    list_display = ("label", "kind", "client", "enabled", "has_secrets", "updated_at")
    list_filter = ("kind", "enabled")
    readonly_fields = ("has_secrets", "created_at", "updated_at")
    actions = ["health_check"]

    @admin.display(boolean=True, description=_("secrets enregistrés"))
    def has_secrets(self, obj: PartnerConnector) -> bool:
        return bool(obj.secrets_sealed)

    def save_model(self, request: HttpRequest, obj: PartnerConnector, form: Any, change: bool) -> None:
        secrets = form.cleaned_data.get("secrets_input")
        if secrets is not None:
            obj.secrets_sealed = seal_secrets(obj.pk, secrets)
        with transaction.atomic():
            super().save_model(request, obj, form, change)
            audit_log(
                event="connector.changed" if change else "connector.added",
                acting_user=request_user(request),
                client_id=obj.client.client_id,
                data={"connector": str(obj.pk), "kind": obj.kind, "secrets_changed": secrets is not None},
            )

    @admin.action(description=_("Vérifier que le partenaire répond"))
    def health_check(self, request: HttpRequest, queryset: QuerySet) -> HttpResponse | None:
        for partner_connector in queryset:
            # Bounded and cached: the partners' page shows the answer too.
            health = monitoring.health_check(partner_connector)
            level = messages.SUCCESS if health.ok else messages.ERROR
            self.message_user(request, f"{partner_connector}: {health.detail}", level)
        return None

    def add_view(self, request: HttpRequest, form_url: str = "", extra_context: Any = None) -> HttpResponse:
        return _sudo(request) or super().add_view(request, form_url, extra_context)

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        return _sudo(request) or super().change_view(request, object_id, form_url, extra_context)

    def delete_view(self, request: HttpRequest, object_id: str, extra_context: Any = None) -> HttpResponse:
        return _sudo(request) or super().delete_view(request, object_id, extra_context)

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> HttpResponse:
        if request.method == "POST" and request.POST.get("action"):
            return _sudo(request) or super().changelist_view(request, extra_context)
        return super().changelist_view(request, extra_context)


def _sudo(request: HttpRequest) -> HttpResponse | None:
    if reauth.recent_mfa(request):
        return None
    reauth.staff_refused_audit(request, reason=reauth.PROBLEM_RECENT_REQUIRED)
    return reauth.reauth_redirect(request)


@admin.register(PartnerLink)
class PartnerLinkAdmin(admin.ModelAdmin):
    """Residents' links, read only: the card number is sealed and never shown (its masked form is)."""

    list_display = ("masked_reference", "connector", "status", "expires_on", "last_checked_at", "last_error")
    list_filter = ("status", "connector")
    fields = (
        "id",
        "user",
        "connector",
        "masked_reference",
        "status",
        "expires_on",
        "last_checked_at",
        "last_error",
        "created_at",
    )
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False
