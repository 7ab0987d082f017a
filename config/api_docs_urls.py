"""/api/schema/ and /api/docs/ (config/api_docs.py), in the `api` namespace."""

from django.urls import path

from config import api_docs

app_name = "api"

urlpatterns = [
    path("schema/", api_docs.SchemaView.as_view(), name="schema"),
    path("docs/", api_docs.DocsView.as_view(url_name="api:schema"), name="docs"),
]
