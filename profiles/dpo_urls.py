"""The profiles pages of the DPO console, under /dpo/ (included from config/urls.py)."""

from django.urls import path

from profiles import dpo_views

app_name = "profiles-dpo"

urlpatterns = [
    path("dpo/personnalisation/", dpo_views.inference, name="inference"),
]
