from django.urls import include, path

from identity import views, views_personal
from identity.login_view import LoginView

app_name = "identity"

urlpatterns = [
    path("", views.home, name="home"),
    path("accessibilite/", views.accessibility_statement, name="accessibility"),
    path("compte/", views.account, name="account"),
    path("compte/informations/", views_personal.personal_information, name="personal-information"),
    path(
        "compte/informations/modifier/",
        views_personal.personal_information_edit,
        name="personal-information-edit",
    ),
    path("compte/informations/adresse-e-mail/", views_personal.email_change, name="email-change"),
    path(
        "compte/informations/adresse-e-mail/annuler/",
        views_personal.email_change_cancel_view,
        name="email-change-cancel",
    ),
    path(
        "compte/adresse-e-mail/confirmer/<str:token>/",
        views_personal.email_change_link,
        name="email-change-confirm",
    ),
    path("compte/mot-de-passe/", views.password_change, name="password-change"),
    path("compte/sessions/", views.sessions_page, name="sessions"),
    path("compte/sessions/<int:session_id>/deconnecter/", views.session_end_view, name="session-end"),
    path("compte/sessions/deconnecter-partout/", views.sessions_end_all_view, name="sessions-end-all"),
    path("compte/ce-netait-pas-moi/<str:token>/", views.not_me, name="not-me"),
    path("connexion/", LoginView.as_view(), name="login"),
    path("", include("identity.mfa.urls")),
    path("deconnexion/", views.logout_view, name="logout"),
    path("franceconnect/", include("identity.franceconnect.urls")),
    path("inscription/", views.register, name="register"),
    path("inscription/envoye/", views.register_done, name="register-done"),
    path("inscription/verifier/<str:token>/", views.verify_email, name="verify-email"),
    path("inscription/adresse-confirmee/", views.email_verified, name="email-verified"),
    path("inscription/renvoyer/", views.resend_verification, name="resend-verification"),
    path("inscription/renvoyer/envoye/", views.resend_done, name="resend-done"),
    path("mot-de-passe-oublie/", views.password_reset, name="password-reset"),
    path("mot-de-passe-oublie/envoye/", views.password_reset_done, name="password-reset-done"),
    path("mot-de-passe-oublie/termine/", views.password_reset_complete, name="password-reset-complete"),
    path(
        "mot-de-passe-oublie/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password-reset-confirm",
    ),
]
