"""Included from identity/urls.py under franceconnect/ (namespace identity:franceconnect).

Register at FranceConnect: redirect URI {OIDC_ISSUER}/franceconnect/retour/ and
post-logout redirect URI {OIDC_ISSUER}/franceconnect/deconnexion/retour/.
"""

from django.urls import path

from identity.franceconnect import views

app_name = "franceconnect"

urlpatterns = [
    path("connexion/", views.start, name="start"),
    path("retour/", views.callback, name="callback"),
    path("premiere-connexion/", views.choose, name="choose"),
    path("lier/connexion/", views.LinkSignInView.as_view(), name="link-sign-in"),
    path("lier/", views.link_confirm, name="link"),
    path("delier/", views.unlink, name="unlink"),
    path("mot-de-passe/", views.password_setup, name="password-setup"),
    path("deconnexion/", views.logout, name="logout"),
    path("deconnexion/retour/", views.logout_return, name="logout-return"),
]
