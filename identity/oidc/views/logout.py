"""RP-Initiated Logout 1.0 (end_session_endpoint)."""

from __future__ import annotations

from oauth2_provider.views import RPInitiatedLogoutView


class EndSessionView(RPInitiatedLogoutView):
    template_name = "oidc/logout_confirm.html"
