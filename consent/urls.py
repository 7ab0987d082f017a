"""URLs of the consent app: the privacy policy and notices, Mon compte › Consentements,
› Copie de mes données and › Suppression du compte (with the erasure's cancel link and status
page), resident receipts and proofs, public receipt verification (page and API), cookie-consent
API and widget demo, DPO console and API."""

from django.urls import include, path

from consent import views_account, views_erasure, views_public, views_receipts, views_rights, views_widget
from consent.api import receipts as api_receipts
from consent.api import views as api_views

app_name = "consent"

urlpatterns = [
    path("confidentialite/", views_public.privacy_policy, name="privacy-policy"),
    path("confidentialite/notices/<str:code>/", views_public.notice_history, name="notice"),
    path("compte/consentements/", views_account.consents_page, name="account-consents"),
    path(
        "compte/consentements/preuves/<uuid:event_id>.json",
        views_account.resident_proof,
        name="proof",
    ),
    path(
        "compte/consentements/<str:code>/decision/",
        views_account.consent_decide,
        name="account-consent-decide",
    ),
    path("recus/verifier/", views_receipts.receipt_verify_page, name="receipt-verify"),
    path(
        "consent/api/v1/receipts/verify", api_receipts.ReceiptVerifyView.as_view(), name="receipt-verify-api"
    ),
    path("compte/export/", views_rights.export_page, name="export"),
    path("compte/export/telecharger/<str:token>/", views_rights.export_download, name="export-download"),
    path("compte/supprimer/", views_erasure.erasure_page, name="erasure"),
    path("compte/supprimer/annuler/", views_erasure.erasure_cancel, name="erasure-cancel"),
    path(
        "compte/suppression/annuler/<str:token>/",
        views_erasure.erasure_cancel_link,
        name="erasure-cancel-link",
    ),
    path("compte/suppression/etat/<str:token>/", views_erasure.erasure_status, name="erasure-status"),
    path("consent/api/v1/cookie/", include("consent.api.urls")),
    path("consent/recus/<uuid:event_id>.jws", api_views.resident_receipt, name="receipt"),
    path("consent/demo-widget/", views_widget.widget_demo, name="widget-demo"),
    path("dpo/api/v1/", include("consent.api.dpo_urls")),
    path("dpo/", include("consent.dpo.urls")),
]
