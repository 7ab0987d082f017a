"""The real purposes of the service, the first global privacy notice and the ledger head.

Per-partner sharing purposes are not seeded: `identity.oidc.sharing.purpose_for_client_scopes`
creates one per (partner client, scope set) when the OIDC consent screen first needs it.
The data is written out here (not imported from the app) so that this migration keeps
producing the same catalogue whatever the code becomes.
"""

import hashlib
import json

from django.db import migrations
from django.utils import timezone

PURPOSES = [
    {
        "code": "personalisation-declared",
        "title_fr": "Personnaliser le portail à partir de votre profil",
        "title_en": "Personalise the portal from your profile",
        "description_fr": (
            "Utiliser les informations que vous déclarez (commune, centres d'intérêt, langue, besoins "
            "d'accessibilité) pour mettre en avant les services, actualités et événements qui vous concernent."
        ),
        "description_en": (
            "Use what you declare (commune, interests, language, accessibility needs) to highlight the "
            "services, news and events relevant to you."
        ),
        "gdpr_article": "Art. 6(1)(a)",
        "dpv_legal_basis": "eu-gdpr:A6-1-a",
        "dpv_purpose": "dpv:ServicePersonalisation",
        "data_categories": [
            {"code": "commune", "kind": "declared", "fr": "Commune de résidence", "en": "Commune of residence"},
            {"code": "interests", "kind": "declared", "fr": "Centres d'intérêt", "en": "Interests"},
            {"code": "language", "kind": "declared", "fr": "Langue", "en": "Language"},
            {
                "code": "accessibility",
                "kind": "declared",
                "fr": "Préférences d'accessibilité",
                "en": "Accessibility preferences",
            },
        ],
        "recipients": ["Nantes Métropole — portail territorial"],
        "retention_days": 395,
        "consent_lifetime_days": 395,
        "requires_consent": True,
    },
    {
        "code": "personalisation-browsing",
        "title_fr": "Personnaliser à partir de votre navigation (cookies)",
        "title_en": "Personalise from your browsing (cookies)",
        "description_fr": (
            "Déduire des centres d'intérêt des pages que vous consultez sur les sites partenaires, au moyen "
            "d'un cookie, pour personnaliser le portail. Vous pouvez voir, corriger et supprimer ces "
            "centres d'intérêt déduits."
        ),
        "description_en": (
            "Infer interests from the pages you visit on partner sites, using a cookie, to personalise the "
            "portal. You can see, correct and delete these inferred interests."
        ),
        "gdpr_article": "Art. 6(1)(a)",
        "dpv_legal_basis": "eu-gdpr:A6-1-a",
        "dpv_purpose": "dpv:ServicePersonalisation",
        "data_categories": [
            {"code": "browsing", "kind": "inferred", "fr": "Pages consultées", "en": "Pages visited"},
            {"code": "inferred-interests", "kind": "inferred", "fr": "Centres d'intérêt déduits", "en": "Inferred interests"},
        ],
        "recipients": ["Nantes Métropole — portail territorial"],
        "retention_days": 395,
        "consent_lifetime_days": 183,
        "requires_consent": True,
    },
    {
        "code": "audience-measurement",
        "title_fr": "Mesure d'audience anonyme",
        "title_en": "Anonymous audience measurement",
        "description_fr": (
            "Statistiques de fréquentation anonymes, strictement nécessaires au bon fonctionnement du service "
            "et exemptées de consentement (CNIL, délibérations 2020-091/092) : traceurs limités à 13 mois, "
            "données conservées 25 mois au plus. Vous pouvez vous y opposer."
        ),
        "description_en": (
            "Anonymous visit statistics, strictly necessary to run the service and exempt from consent "
            "(CNIL deliberations 2020-091/092): trackers limited to 13 months, data kept 25 months at most. "
            "You may object."
        ),
        "gdpr_article": "Art. 6(1)(e)",
        "dpv_legal_basis": "eu-gdpr:A6-1-e",
        "dpv_purpose": "dpv:ServiceUsageAnalytics",
        "data_categories": [
            {"code": "usage-statistics", "kind": "inferred", "fr": "Statistiques de visite", "en": "Visit statistics"},
        ],
        "recipients": ["Nantes Métropole — service numérique"],
        "retention_days": 760,
        "consent_lifetime_days": None,
        "requires_consent": False,
    },
    {
        "code": "service-news-email",
        "title_fr": "Recevoir les actualités des services par e-mail",
        "title_en": "Receive service news by email",
        "description_fr": (
            "Vous envoyer par e-mail les actualités des services publics métropolitains (travaux, nouveaux "
            "services, événements). Un lien de désinscription figure dans chaque message."
        ),
        "description_en": (
            "Email you news of the metropolitan public services (works, new services, events). Every message "
            "has an unsubscribe link."
        ),
        "gdpr_article": "Art. 6(1)(a)",
        "dpv_legal_basis": "eu-gdpr:A6-1-a",
        "dpv_purpose": "dpv:CommunicationManagement",
        "data_categories": [
            {"code": "email", "kind": "declared", "fr": "Adresse e-mail", "en": "Email address"},
            {"code": "interests", "kind": "declared", "fr": "Centres d'intérêt", "en": "Interests"},
        ],
        "recipients": ["Nantes Métropole — direction de la communication"],
        "retention_days": 395,
        "consent_lifetime_days": 395,
        "requires_consent": True,
    },
]

NOTICE_FR = (
    "Nantes Métropole, responsable de traitement, tient votre compte unique au titre de sa mission de service "
    "public (RGPD, art. 6(1)(e)). Les usages facultatifs de vos données — personnalisation du portail, "
    "personnalisation à partir de votre navigation, actualités par e-mail, partage avec un service partenaire "
    "— reposent sur votre consentement (art. 6(1)(a)), donné finalité par finalité. Refuser est aussi simple "
    "qu'accepter ; vous pouvez retirer votre consentement à tout moment depuis votre compte, sans conséquence "
    "sur l'accès aux services publics. Chaque choix est inscrit dans un registre infalsifiable dont vous recevez "
    "un reçu signé. Vous disposez des droits d'accès, de rectification, d'effacement, de limitation, "
    "d'opposition et de portabilité, et du droit d'introduire une réclamation auprès de la CNIL."
)
NOTICE_EN = (
    "Nantes Métropole, the controller, keeps your single account as part of its public task (GDPR Art. "
    "6(1)(e)). Optional uses of your data — personalising the portal, personalising from your browsing, "
    "news by email, sharing with a partner service — rest on your consent (Art. 6(1)(a)), given purpose by "
    "purpose. Refusing is as easy as accepting; you may withdraw your consent at any time from your account, "
    "with no effect on access to public services. Every choice is written to a tamper-evident ledger and you "
    "receive a signed receipt. You have the rights of access, rectification, erasure, restriction, objection "
    "and portability, and may lodge a complaint with the CNIL."
)


def notice_sha256(text_fr: str, text_en: str) -> str:
    # Same definition as consent.services.notice_content_sha256.
    canonical = json.dumps({"en": text_en, "fr": text_fr}, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def seed(apps, schema_editor):
    Purpose = apps.get_model("consent", "Purpose")
    PrivacyNotice = apps.get_model("consent", "PrivacyNotice")
    LedgerHead = apps.get_model("consent", "LedgerHead")
    for data in PURPOSES:
        Purpose.objects.update_or_create(code=data["code"], defaults=data)
    if not PrivacyNotice.objects.filter(purpose__isnull=True).exists():
        PrivacyNotice.objects.create(
            purpose=None,
            version=1,
            text_fr=NOTICE_FR,
            text_en=NOTICE_EN,
            content_sha256=notice_sha256(NOTICE_FR, NOTICE_EN),
            material=True,
            published_at=timezone.now(),
        )
    LedgerHead.objects.get_or_create(
        pk=1, defaults={"size": 0, "root_hash": hashlib.sha256(b"").digest(), "frontier": b""}
    )


class Migration(migrations.Migration):
    dependencies = [("consent", "0002_append_only_triggers")]

    operations = [migrations.RunPython(seed, migrations.RunPython.noop)]
