"""A demo partner page embedding the cookie-consent widget (only when DEMO_ENABLED)."""

from __future__ import annotations

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from consent.api import cors
from identity.demo import DEMO_CLIENT_NAME
from identity.models import Client


@never_cache
@require_GET
def widget_demo(request: HttpRequest) -> HttpResponse:
    if not settings.DEMO_ENABLED:
        raise Http404
    client = Client.objects.filter(name=DEMO_CLIENT_NAME).first()
    issuer_origin = cors.normalise_origin(settings.ISSUER)
    context = {
        "client": client,
        "issuer_origin": issuer_origin,
        "origin_registered": client is not None and cors.origin_allowed(client, issuer_origin),
    }
    return render(request, "consent/widget_demo.html", context, status=200 if client else 503)
