"""OpenAPI pieces of the profiles API (drf-spectacular): the RFC 7807 problem answers and the
bearer-token security scheme of the partner endpoints.

TEMPORARY: the shared `Problem` component and `problem_responses` arrive in common/openapi.py
(branch api-schema); this module then only keeps the bearer scheme.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from common.problems import PROBLEM_CONTENT_TYPE

PARTNER_BEARER_SCHEME = "partnerAccessToken"


class ProblemSerializer(serializers.Serializer[Any]):
    type = serializers.CharField()
    title = serializers.CharField()
    status = serializers.IntegerField()
    detail = serializers.CharField(required=False)
    code = serializers.CharField(required=False)

    class Meta:
        ref_name = "ProfilesProblem"

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["errors"] = serializers.JSONField(required=False)
        return fields


def problem_responses(
    *codes: int, descriptions: Mapping[int, str] | None = None
) -> dict[tuple[int, str], OpenApiResponse]:
    return {
        (code, PROBLEM_CONTENT_TYPE): OpenApiResponse(
            response=ProblemSerializer, description=(descriptions or {}).get(code, "Problem")
        )
        for code in codes
    }


class PartnerTokenScheme(OpenApiAuthenticationExtension):
    """profiles.api.auth.PartnerTokenAuthentication: a resident's access token issued to the
    calling partner, in the Authorization header (RFC 6750 §2.1)."""

    target_class = "profiles.api.auth.PartnerTokenAuthentication"
    name = PARTNER_BEARER_SCHEME

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "JWT",
            "description": "A resident's access token (RFC 9068 JWT) issued to the calling partner "
            "by this provider's token endpoint; sent by the partner's back-end only.",
        }
