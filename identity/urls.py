from django.urls import path

from identity import views

app_name = "identity"

urlpatterns = [
    path("", views.home, name="home"),
    path("compte/", views.account, name="account"),
    path("connexion/", views.LoginView.as_view(), name="login"),
    path("deconnexion/", views.logout_view, name="logout"),
]
