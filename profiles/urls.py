"""URLs of the profiles app's pages: Mon compte › Personnalisation (profiles/views.py)."""

from django.urls import path

from profiles import views

app_name = "profiles"

urlpatterns = [
    path("compte/personnalisation/", views.personalisation_page, name="account-personalisation"),
    path(
        "compte/personnalisation/interets/tout-supprimer/",
        views.interests_forget_all,
        name="interests-delete-all",
    ),
    path(
        "compte/personnalisation/interets/<str:theme>/pas-interesse/",
        views.interest_not_interested,
        name="interest-not-interested",
    ),
    path(
        "compte/personnalisation/interets/<str:theme>/supprimer/",
        views.interest_forget,
        name="interest-delete",
    ),
    path(
        "compte/personnalisation/interets/<str:theme>/annuler/",
        views.correction_undo,
        name="interest-correction-undo",
    ),
    path("compte/personnalisation/<str:code>/decision/", views.purpose_decide, name="purpose-decide"),
    path("compte/personnalisation/<str:code>/donnees/", views.declared_save, name="declared-save"),
]
