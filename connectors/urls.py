"""URLs of the connectors app: Mon compte › Cartes et abonnements."""

from django.urls import path

from connectors import views

app_name = "connectors"

urlpatterns = [
    path("compte/cartes/", views.cards_page, name="cards"),
    path("compte/cartes/<uuid:connector_id>/lier/", views.card_link, name="card-link"),
    path("compte/cartes/<uuid:link_id>/actualiser/", views.card_refresh, name="card-refresh"),
    path("compte/cartes/<uuid:link_id>/retirer/", views.card_remove, name="card-remove"),
]
