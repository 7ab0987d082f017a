from django.urls import path

from consent.api import dpo

app_name = "dpo-api"

urlpatterns = [
    path("events", dpo.EventsView.as_view(), name="events"),
    path("events/<uuid:event_id>", dpo.EventDetailView.as_view(), name="event"),
    path("events/<uuid:event_id>/proof", dpo.EventProofView.as_view(), name="event-proof"),
    path("events/<uuid:event_id>/receipt", dpo.EventReceiptView.as_view(), name="event-receipt"),
    path("stats", dpo.StatsView.as_view(), name="stats"),
    path("register", dpo.RegisterView.as_view(), name="register"),
    path("verify", dpo.VerifyView.as_view(), name="verify"),
    path("tree-head", dpo.TreeHeadView.as_view(), name="tree-head"),
]
