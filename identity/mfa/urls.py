from django.urls import path

from identity.mfa import views

app_name = "mfa"

urlpatterns = [
    path("connexion/verification/", views.verify, name="verify"),
    path("connexion/verification/cle/options/", views.verify_passkey_options, name="verify-passkey-options"),
    path("connexion/verification/cle/", views.verify_passkey, name="verify-passkey"),
    path("connexion/cle/options/", views.passwordless_options, name="passwordless-options"),
    path("connexion/cle/", views.passwordless, name="passwordless"),
    path("compte/securite/", views.factors, name="factors"),
    path("compte/securite/application/ajouter/", views.totp_add, name="totp-add"),
    path("compte/securite/codes-de-secours/", views.backup_codes, name="backup-codes"),
    path("compte/securite/cles/ajouter/", views.passkey_add, name="passkey-add"),
    path("compte/securite/cles/options/", views.passkey_register_options, name="passkey-options"),
    path("compte/securite/cles/enregistrer/", views.passkey_register, name="passkey-register"),
    path("compte/securite/<str:kind>/<int:factor_id>/renommer/", views.factor_rename, name="factor-rename"),
    path("compte/securite/<str:kind>/<int:factor_id>/supprimer/", views.factor_remove, name="factor-remove"),
]
