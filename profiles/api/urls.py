from django.urls import path

from profiles.api import views

app_name = "profiles-api"

urlpatterns = [
    path("me/profile", views.DeclaredProfileView.as_view(), name="profile"),
    path("me/interests", views.InterestsView.as_view(), name="interests"),
    path("me/interests/<str:theme>", views.InterestView.as_view(), name="interest"),
    path("me/interests/<str:theme>/not-interested", views.NotInterestedView.as_view(), name="not-interested"),
    path("themes", views.ThemesView.as_view(), name="themes"),
    path("page-views", views.PageViewsView.as_view(), name="page-views"),
    path("personalisation", views.PersonalisationView.as_view(), name="personalisation"),
]
