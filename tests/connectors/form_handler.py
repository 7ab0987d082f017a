"""A test-only outbox message kind: POST form fields to a local partner endpoint.

The outbox tests need a kind whose delivery they can watch on a real port; no production
code sends one (back-channel logout has its own kind, identity/oidc/backchannel.py).
`register()` runs in the test process (tests/connectors/conftest.py) and in each worker
process the tests start (tests/connectors/outbox_worker.py).
"""

from __future__ import annotations

from connectors.models import OutboxMessage
from connectors.outbox import PermanentDeliveryError, http_post_form, register_handler

HTTP_FORM_POST = "http_form_post"


def deliver_http_form_post(message: OutboxMessage) -> None:
    """POST `payload["fields"]` form-encoded to `destination`; any 2xx is a delivery."""
    fields = message.payload.get("fields")
    if not isinstance(fields, dict):
        raise PermanentDeliveryError("payload has no fields")
    http_post_form(
        message.destination,
        {str(k): str(v) for k, v in fields.items()},
        headers={"Idempotency-Key": message.idempotency_key},
    )


def register() -> None:
    register_handler(HTTP_FORM_POST, deliver_http_form_post)
