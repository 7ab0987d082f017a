"""The export archive (GDPR Art. 15 and 20): one zip, `export.json` and `export.html`.

`export.json` is `consent.rights.rights_export(user)` as it is (the versioned envelope:
`format`, `version`, `generated_at`, `user_id`, `sections`) plus the partners' answers
(`partners`, consent.rights_requests), described by the JSON Schema
docs/export-schema.json. `export.html` is the same content for people: one heading per
provider's section, a table per list, in the resident's language. Pure functions: no
database, nothing stored (consent.rights_requests stores the archive, encrypted).
"""

from __future__ import annotations

import io
import json
import zipfile
from typing import Any

from django.template.loader import render_to_string
from django.utils import dateformat, timezone, translation
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext_lazy as _

JSON_NAME = "export.json"
HTML_NAME = "export.html"

# Plain-language titles of the providers' sections and of their parts (the keys of the
# sections, docs/export-schema.json). A key not listed here is shown as it is.
SECTION_TITLES = {
    "identity": _("Votre compte, vos connexions et l'historique de sécurité"),
    "oidc": _("Les services partenaires auxquels vous vous êtes connecté"),
    "mfa": _("La vérification en deux étapes"),
    "franceconnect": _("Le lien avec FranceConnect"),
    "connectors": _("Les messages en attente d'envoi"),
    "connectors_scim": _("Les comptes créés pour vous chez des partenaires"),
    "profiles": _("Votre personnalisation"),
    "consent": _("Vos consentements"),
}
PART_TITLES = {
    "account": _("Votre compte"),
    "groups": _("Groupes du personnel"),
    "permissions": _("Droits du personnel"),
    "sessions": _("Vos sessions (navigateurs et appareils)"),
    "email_verifications": _("Liens de confirmation d'adresse envoyés"),
    "email_changes": _("Changements d'adresse e-mail demandés"),
    "audit_events": _("Historique de sécurité"),
    "admin_log": _("Actions dans l'administration"),
    "session_clients": _("Services utilisés pendant chaque session"),
    "authorization_codes": _("Autorisations données aux services"),
    "access_tokens": _("Jetons d'accès délivrés"),
    "refresh_tokens": _("Jetons de renouvellement délivrés"),
    "id_tokens": _("Jetons d'identité délivrés"),
    "device_grants": _("Autorisations d'appareils"),
    "internal_service_notices": _("Services de la métropole dont vous avez été informé"),
    "owned_clients": _("Services partenaires que vous gérez"),
    "totp": _("Applications d'authentification"),
    "backup_codes": _("Codes de secours"),
    "passkeys": _("Clés d'accès"),
    "link": _("Identité FranceConnect liée"),
    "outbox": _("Messages en attente"),
    "accounts": _("Vos comptes chez les partenaires"),
    "pseudonyms": _("Vos pseudonymes dans le registre des consentements"),
    "current_choices": _("Vos choix actuels"),
    "ledger_events": _("Historique de vos consentements"),
    "unreadable_events": _("Événements illisibles (altérés)"),
    "declared": _("Ce que vous avez déclaré"),
    "interests": _("Centres d'intérêt déduits de votre navigation"),
    "corrections": _("Vos corrections des centres d'intérêt"),
    "inference": _("Comment les centres d'intérêt sont calculés"),
}
# Plain-language headings of the tables' columns (the keys of the rows). A key not listed
# here is shown as it is.
COLUMN_TITLES = {
    "id": _("identifiant"),
    "email": _("adresse e-mail"),
    "email_verified": _("adresse confirmée"),
    "given_name": _("prénom"),
    "family_name": _("nom"),
    "preferred_language": _("langue"),
    "phone_number": _("téléphone"),
    "phone_number_verified": _("téléphone vérifié"),
    "address": _("adresse postale"),
    "is_active": _("compte actif"),
    "is_staff": _("membre du personnel"),
    "has_password": _("mot de passe défini"),
    "last_login": _("dernière connexion"),
    "created_at": _("créé le"),
    "updated_at": _("modifié le"),
    "created": _("créé le"),
    "expires": _("expire le"),
    "expires_at": _("expire le"),
    "used_at": _("utilisé le"),
    "last_used_at": _("dernière utilisation"),
    "auth_time": _("connexion le"),
    "last_seen_at": _("dernière activité"),
    "ended_at": _("terminée le"),
    "end_reason": _("raison de la fin"),
    "amr": _("moyens de connexion"),
    "acr": _("niveau de connexion"),
    "device": _("appareil"),
    "user_agent": _("navigateur"),
    "new_email": _("nouvelle adresse"),
    "old_email": _("ancienne adresse"),
    "cancelled_at": _("annulé le"),
    "at": _("date"),
    "event": _("événement"),
    "actor": _("fait par"),
    "about_self": _("vous concerne"),
    "client_id": _("service (identifiant)"),
    "client_name": _("service"),
    "data": _("précisions"),
    "action": _("action"),
    "model": _("type de donnée"),
    "session": _("session"),
    "first_issued_at": _("première fois"),
    "last_issued_at": _("dernière fois"),
    "scope": _("informations demandées"),
    "scopes": _("informations demandées"),
    "redeemed_at": _("utilisé le"),
    "revoked": _("révoqué le"),
    "status": _("état"),
    "first_shown_at": _("première fois"),
    "last_shown_at": _("dernière fois"),
    "name": _("nom"),
    "confirmed": _("activée"),
    "synced": _("synchronisée"),
    "transports": _("connexion"),
    "aaguid": _("modèle"),
    "sub": _("identifiant FranceConnect"),
    "linked_at": _("lié le"),
    "kind": _("type"),
    "partner": _("partenaire"),
    "attempts": _("tentatives"),
    "delivered_at": _("envoyé le"),
    "template": _("message"),
    "purpose": _("finalité"),
    "purpose_granted": _("finalité accordée"),
    "value": _("valeur"),
    "theme": _("thème"),
    "weight_now": _("poids aujourd'hui"),
    "views": _("pages vues"),
    "first_seen_at": _("première visite"),
    "sources": _("sources"),
    "site": _("site"),
    "first": _("première fois"),
    "last": _("dernière fois"),
    "verdict": _("correction"),
    "taxonomy_version": _("version de la liste des thèmes"),
    "half_life_days": _("demi-vie (jours)"),
    "faded_below_weight": _("oublié sous le poids"),
    "half_life_set_by_you": _("demi-vie réglée par vous"),
    "valid_until": _("valable jusqu'au"),
    "renewal_required": _("à renouveler"),
    "receipt_id": _("reçu"),
    "leaf_index": _("position dans le registre"),
    "pseudonym": _("pseudonyme"),
    "type": _("type"),
    "notice_version": _("version de la notice"),
    "collection_method": _("recueilli par"),
    "partner_client_id": _("service partenaire"),
    "details": _("détails"),
    "reason": _("raison"),
    "state": _("état"),
    "requested_at": _("demandée le"),
    "started_at": _("commencée le"),
    "completed_at": _("terminée le"),
    "deadline": _("date limite de réponse"),
    "downloaded_at": _("téléchargée le"),
    "total": _("nombre"),
    "unused": _("non utilisés"),
    "detail": _("précisions du service"),
}


def _label(key: str) -> str:
    return str(COLUMN_TITLES.get(key, key.replace("_", " ")))


def _when(value: str) -> str | None:
    """An ISO 8601 date and time as people read it (Europe/Paris), else None."""
    if len(value) < 19 or value[4:5] != "-" or "T" not in value:
        return None
    try:
        moment = parse_datetime(value)
    except ValueError:
        return None
    if moment is None or moment.tzinfo is None:
        return None
    return dateformat.format(timezone.localtime(moment), "j F Y, H:i")


def _cell(value: Any) -> str:
    if isinstance(value, str):
        return _when(value) or value
    if value is None:
        return "—"
    if value is True:
        return str(_("oui"))
    if value is False:
        return str(_("non"))
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False, sort_keys=True) if value else "—"
    return str(value)


def _part(key: str, value: Any) -> dict[str, Any]:
    title = PART_TITLES.get(key, key.replace("_", " "))
    if isinstance(value, list) and value and all(isinstance(row, dict) for row in value):
        columns: list[str] = []
        for row in value:
            columns.extend(column for column in row if column not in columns)
        rows = [[_cell(row.get(column)) for column in columns] for row in value]
        return {"title": title, "kind": "table", "columns": [_label(c) for c in columns], "rows": rows}
    if isinstance(value, dict) and value:
        return {"title": title, "kind": "fields", "fields": [(_label(k), _cell(v)) for k, v in value.items()]}
    if isinstance(value, list) and value:
        return {"title": title, "kind": "text", "text": ", ".join(_cell(item) for item in value)}
    if value in (None, [], {}, ""):
        return {"title": title, "kind": "empty"}
    return {"title": title, "kind": "text", "text": _cell(value)}


PARTNERS_TITLE = _("Vos données chez les services partenaires")
PARTNER_STATES = {
    "answered": _("données reçues"),
    "requested": _("demandée, en attente de réponse"),
    "queued": _("demandée, en attente de réponse"),
    "delivered": _("demandée, en attente de réponse"),
    "failing": _("le service ne répond pas pour le moment"),
    "dead_letter": _("la demande n'a pas pu être transmise"),
    "refused": _("refusée par le service"),
    "not_supported": _("ne peut pas être demandée à ce service"),
    "failed": _("le service n'a pas pu transmettre vos données"),
}


def _partners_part(partners: list[Any]) -> dict[str, Any]:
    """The archive's `partners` (consent.rights_requests): one heading, each partner's fields."""
    parts = []
    for item in partners:
        if not isinstance(item, dict):
            continue
        state = str(item.get("state", ""))
        value: dict[str, Any] = {"state": str(PARTNER_STATES.get(state, state)), "at": item.get("at")}
        if item.get("detail"):
            value["detail"] = item["detail"]
        for source, data in (item.get("data") or {}).items():
            value[f"{COLUMN_TITLES['data']} ({source})"] = data
        part = _part(str(item.get("name") or item.get("partner") or ""), value)
        parts.append(part)
    return {"name": "partners", "title": PARTNERS_TITLE, "parts": parts}


def html_sections(envelope: dict[str, Any]) -> list[dict[str, Any]]:
    """The envelope's sections as headings, tables and fields for export.html; the partners'
    answers last (`partners`, when the export asked any)."""
    sections = []
    # The account first (people look for it first), then the providers in their order.
    ordered = sorted(envelope.get("sections", {}).items(), key=lambda item: item[0] != "identity")
    for name, section in ordered:
        parts = (
            [_part(key, value) for key, value in section.items()]
            if isinstance(section, dict)
            else [_part(name, section)]
        )
        sections.append({"name": name, "title": SECTION_TITLES.get(name, name), "parts": parts})
    if envelope.get("partners"):
        sections.append(_partners_part(envelope["partners"]))
    return sections


def archive_build(envelope: dict[str, Any], *, language: str) -> bytes:
    """The zip handed to the resident: export.json and export.html (in `language`)."""
    data = json.dumps(envelope, ensure_ascii=False, indent=2, sort_keys=False).encode("utf-8")
    with translation.override(language):
        page = render_to_string(
            "consent/export_archive.html",
            {
                "envelope": envelope,
                "generated_at": _cell(envelope.get("generated_at")),
                "sections": html_sections(envelope),
                "language": translation.get_language(),
            },
        )
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr(JSON_NAME, data)
        archive.writestr(HTML_NAME, page.encode("utf-8"))
    return buffer.getvalue()
