from django.urls import path

from identity.demo import views

app_name = "demo"

urlpatterns = [
    path("", views.index, name="index"),
    path("start", views.start, name="start"),
    path("callback", views.callback, name="callback"),
    path("portail/", views.portal, name="portal"),
]
