from __future__ import annotations

import base64
import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path
from django.utils import timezone
from django.utils.decorators import method_decorator
from django.utils.formats import date_format
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_http_methods

from common.ratelimit import client_ip
from connectors import monitoring, partner_answers, registry
from connectors.models import OutboxMessage, PartnerConnector, PartnerLink, PartnerRightsAsk
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


ANSWER_MAX_BYTES = 5 * 1024 * 1024


class PartnerAnswerForm(forms.Form):
    """An operator records a partner's answer to an emailed rights request."""

    answer = forms.ChoiceField(label=_("Réponse du partenaire"), widget=forms.RadioSelect)
    reason = forms.CharField(
        label=_("Raison du refus"),
        required=False,
        max_length=200,
        help_text=_("En cas de refus : la raison donnée par le partenaire, sans donnée personnelle."),
    )
    data_file = forms.FileField(
        label=_("Fichier envoyé par le partenaire"),
        required=False,
        help_text=_("JSON de préférence ; un autre format est joint tel quel (5 Mo au plus)."),
    )
    data_json = forms.CharField(
        label=_("Ou données collées (JSON)"),
        required=False,
        widget=forms.Textarea(attrs={"rows": 8}),
    )

    def __init__(self, *args: Any, kind: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        allowed = partner_answers.EXPORT_ANSWERS if kind == "export" else partner_answers.ERASURE_ANSWERS
        choices = [(state.value, state.label) for state in allowed]
        self.fields["answer"].choices = choices  # type: ignore[attr-defined]

    def _file_data(self, upload: Any) -> Any:
        if upload.size > ANSWER_MAX_BYTES:
            raise forms.ValidationError(_("Le fichier dépasse 5 Mo."))
        content = upload.read()
        try:
            return json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return {
                "filename": upload.name,
                "media_type": upload.content_type or "application/octet-stream",
                "base64": base64.b64encode(content).decode(),
            }

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        answer = data.get("answer")
        if answer == PartnerRightsAsk.State.REFUSED and not data.get("reason"):
            self.add_error("reason", _("Indiquez la raison donnée par le partenaire."))
        if answer != PartnerRightsAsk.State.ANSWERED:
            data["data"] = None
            return data
        upload, pasted = data.get("data_file"), (data.get("data_json") or "").strip()
        if bool(upload) == bool(pasted):
            self.add_error(
                "data_json", _("Joignez le fichier du partenaire ou collez ses données, l'un des deux.")
            )
            return data
        try:
            data["data"] = self._file_data(upload) if upload else json.loads(pasted)
        except forms.ValidationError as exc:
            self.add_error("data_file", exc)
        except ValueError:
            self.add_error("data_json", _("Ce n'est pas du JSON valide."))
        return data


@admin.register(PartnerRightsAsk)
class PartnerRightsAskAdmin(admin.ModelAdmin):
    """Rights requests sent by email to partners: overdue ones first; an operator records the
    partner's answer (sudo mode, audited: connectors.partner_answers.record_answer)."""

    list_display = ("due_display", "connector", "kind", "state", "sent_at", "answered_at")
    list_filter = ("state", "kind", "connector")
    fields = ("connector", "request", "kind", "state", "sent_at", "due_at", "answered_at", "reason")
    readonly_fields = fields
    change_form_template = "admin/connectors/partnerrightsask_answer.html"

    def get_queryset(self, request: HttpRequest) -> QuerySet[PartnerRightsAsk]:
        return super().get_queryset(request).select_related("connector__client").order_by("-state", "due_at")

    @admin.display(description=_("réponse due le"), ordering="due_at")
    def due_display(self, obj: PartnerRightsAsk) -> str:
        due = date_format(timezone.localtime(obj.due_at), "DATE_FORMAT")
        if obj.overdue:
            return format_html("<strong>{} — {}</strong>", due, _("en retard"))
        return due

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def change_view(
        self, request: HttpRequest, object_id: str, form_url: str = "", extra_context: Any = None
    ) -> HttpResponse:
        ask = get_object_or_404(PartnerRightsAsk.objects.select_related("connector__client"), pk=object_id)
        if not self.has_view_or_change_permission(request, ask):
            raise PermissionDenied
        open_ask = ask.state == PartnerRightsAsk.State.REQUESTED
        can_record = self.has_change_permission(request, ask) and open_ask
        form = PartnerAnswerForm(kind=ask.kind)
        if request.method == "POST" and can_record:
            refused = _sudo(request)
            if refused is not None:
                return refused
            form = PartnerAnswerForm(request.POST, request.FILES, kind=ask.kind)
            if form.is_valid():
                try:
                    partner_answers.record_answer(
                        ask=ask,
                        operator=request_user(request),
                        state=form.cleaned_data["answer"],
                        reason=form.cleaned_data.get("reason") or "",
                        data=form.cleaned_data.get("data"),
                        ip=client_ip(request),
                    )
                except partner_answers.AnswerError as exc:
                    self.message_user(request, str(exc), messages.ERROR)
                else:
                    self.message_user(request, _("Réponse du partenaire enregistrée."), messages.SUCCESS)
                    return redirect("admin:connectors_partnerrightsask_changelist")
        context = {
            **self.admin_site.each_context(request),
            "opts": self.model._meta,
            "title": _("Réponse d'un partenaire à une demande par e-mail"),
            "ask": ask,
            "form": form,
            "can_record": can_record,
            "open_ask": open_ask,
            **(extra_context or {}),
        }
        return TemplateResponse(request, self.change_form_template, context)
