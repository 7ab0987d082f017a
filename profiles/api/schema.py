"""The RFC 7807 problem answers in the profiles API's OpenAPI description.

TEMPORARY: the shared `Problem` component and `problem_responses` arrive in common/openapi.py
(branch api-schema); this module then goes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from drf_spectacular.utils import OpenApiResponse
from rest_framework import serializers

from common.problems import PROBLEM_CONTENT_TYPE


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
