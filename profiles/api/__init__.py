"""The profiles REST API, /profiles/api/v1/ (docs/partners.md, "Personalisation")."""
