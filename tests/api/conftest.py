"""Fixtures for the OpenAPI tests: the consent API's partner, catalogue and DPO, re-exported."""

from tests.consent_api.conftest import (  # noqa: F401  (fixtures, re-exported)
    catalogue,
    dpo,
    dpo_http,
    make_dpo,
    partner,
)
