from django.urls import path

from consent.api import views

app_name = "cookie-api"

urlpatterns = [
    path("config", views.CookieConfigView.as_view(), name="config"),
    path("choices", views.CookieChoicesView.as_view(), name="choices"),
    path("receipts/<uuid:event_id>", views.CookieReceiptView.as_view(), name="receipt"),
    path("attach", views.CookieAttachView.as_view(), name="attach"),
    path("link", views.CookieLinkView.as_view(), name="link"),
]
