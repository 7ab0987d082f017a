from django.urls import path

from consent.dpo import catalogue, views

app_name = "dpo"

urlpatterns = [
    path("", views.search, name="search"),
    path("export.csv", views.export_csv, name="export-csv"),
    path("export.json", views.export_json, name="export-json"),
    path("evenements/<uuid:event_id>/", views.event_detail, name="event"),
    path("evenements/<uuid:event_id>/recu.jws", views.event_receipt, name="event-receipt"),
    path("evenements/<uuid:event_id>/preuve.json", views.event_proof_download, name="event-proof"),
    path("statistiques/", views.stats, name="stats"),
    path("registre/", views.register, name="register"),
    path("finalites/", catalogue.catalogue, name="catalogue"),
    path("demandes/", views.rights_requests_page, name="rights-requests"),
    path("finalites/nouvelle/", catalogue.purpose_new, name="purpose-new"),
    path("finalites/notice-generale/", catalogue.global_notice_new, name="global-notice-new"),
    path("finalites/<str:code>/notice/", catalogue.notice_new, name="notice-new"),
    path("verification/", views.ledger_page, name="ledger"),
    path("verification/signer/", views.tree_head_create, name="tree-head-sign"),
]
