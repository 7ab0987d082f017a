"""Shapes of the profiles API's requests and answers, for the OpenAPI description.

The views build their answers from profiles.selectors (plain dicts) and read their bodies
through the services' own validation; these serializers describe them (drf-spectacular)
and the tests check real answers against the generated description.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from profiles import taxonomy

ITEM_KINDS = ("commune", "quartier", "theme", "language", "accessibility")


# --- Resident: declared profile -----------------------------------------------------------------


@extend_schema_field(
    {
        "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}],
        "description": 'The field\'s value: a string ("" when not declared), or a list of codes.',
    }
)
class DeclaredValueField(serializers.JSONField):
    pass


class DeclaredFieldSerializer(serializers.Serializer[Any]):
    value = DeclaredValueField(help_text="Empty when not declared, or while its purpose is not granted.")
    purpose = serializers.CharField(help_text="The ledger purpose this field is kept under.")
    granted = serializers.BooleanField(help_text="Whether that purpose is granted now.")


# DRF's Field and Serializer classes have attributes named `fields`, `label` and `source`:
# answer members of these names are added in get_fields(), never as class attributes.


class DeclaredProfileSerializer(serializers.Serializer[Any]):
    """`fields`: every declared field (the names of `DeclaredPatch`), its value and purpose."""

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["fields"] = serializers.DictField(
            child=DeclaredFieldSerializer(),
            help_text="Every declared field: " + ", ".join(taxonomy.DECLARED_FIELDS),
        )
        return fields

    taxonomy_version = serializers.IntegerField(help_text="Version of the themes' list the codes belong to.")
    updated_at = serializers.DateTimeField(allow_null=True)


class DeclaredPatchSerializer(serializers.Serializer[Any]):
    """A partial update: only the fields given change; an empty value ("" or []) clears one.
    Unknown fields, communes, quartiers, themes and codes are refused (400)."""

    commune = serializers.CharField(required=False, allow_blank=True, help_text="INSEE code")
    quartier = serializers.CharField(required=False, allow_blank=True)
    themes = serializers.ListField(child=serializers.CharField(), required=False)
    language = serializers.ChoiceField(
        choices=sorted(taxonomy.PORTAL_LANGUAGES), required=False, allow_blank=True
    )
    accessibility = serializers.ListField(
        child=serializers.ChoiceField(choices=list(taxonomy.ACCESSIBILITY)), required=False
    )
    notification_frequency = serializers.ChoiceField(
        choices=list(taxonomy.NOTIFICATION_FREQUENCIES), required=False, allow_blank=True
    )
    notification_themes = serializers.ListField(child=serializers.CharField(), required=False)


# --- Resident: interests --------------------------------------------------------------------------


class InterestSourceSerializer(serializers.Serializer[Any]):
    site = serializers.CharField()
    views = serializers.IntegerField()
    first = serializers.DateTimeField()
    last = serializers.DateTimeField()


class InterestSerializer(serializers.Serializer[Any]):
    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["label"] = serializers.CharField(help_text="In the request's language.")
        return fields

    theme = serializers.CharField()
    weight = serializers.FloatField(help_text="Decayed number of views now (halved every half-life).")
    views = serializers.IntegerField()
    first_seen_at = serializers.DateTimeField()
    last_seen_at = serializers.DateTimeField()
    sources = InterestSourceSerializer(many=True, help_text="Where the views came from, per site.")


class ThemeRefSerializer(serializers.Serializer[Any]):
    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["label"] = serializers.CharField(help_text="In the request's language.")
        return fields

    theme = serializers.CharField()


class InterestsSerializer(serializers.Serializer[Any]):
    purpose_granted = serializers.BooleanField(help_text="Whether personalisation-browsing is granted now.")
    half_life_days = serializers.IntegerField()
    interests = InterestSerializer(many=True)
    corrections = ThemeRefSerializer(many=True, help_text='Themes marked "not interested".')


# --- Taxonomy -------------------------------------------------------------------------------------


class LabelledCodeSerializer(serializers.Serializer[Any]):
    code = serializers.CharField()
    fr = serializers.CharField()
    en = serializers.CharField()


class QuartierSerializer(serializers.Serializer[Any]):
    code = serializers.CharField()
    name = serializers.CharField()


class CommuneSerializer(serializers.Serializer[Any]):
    insee_code = serializers.CharField()
    name = serializers.CharField()
    quartiers = QuartierSerializer(many=True)


class TaxonomySerializer(serializers.Serializer[Any]):
    version = serializers.IntegerField()
    published = serializers.CharField()
    themes = LabelledCodeSerializer(many=True)
    communes = CommuneSerializer(many=True)
    accessibility = LabelledCodeSerializer(many=True)
    notification_frequencies = LabelledCodeSerializer(many=True)
    languages = LabelledCodeSerializer(many=True)


# --- Partners -------------------------------------------------------------------------------------


class PageViewSerializer(serializers.Serializer[Any]):
    """From a partner page: client_id, browser_id and browser_secret are required (the
    widget's browser and its proof). From a partner back-end (Bearer token): only site,
    themes and viewed_at (client_id, if given, must be the token's client)."""

    client_id = serializers.CharField(required=False)
    browser_id = serializers.CharField(required=False)
    browser_secret = serializers.CharField(required=False)
    site = serializers.CharField(help_text="Host name of the page, such as www.nantes.fr")
    themes = serializers.ListField(child=serializers.CharField(), min_length=1, max_length=5)
    viewed_at = serializers.DateTimeField(required=False, help_text="ISO 8601 with a time zone; default now.")


class PageViewAcceptedSerializer(serializers.Serializer[Any]):
    counted = serializers.ListField(
        child=serializers.CharField(), help_text='Themes counted (those marked "not interested" are not).'
    )


class BrowserProofSerializer(serializers.Serializer[Any]):
    client_id = serializers.CharField()
    browser_id = serializers.CharField()
    browser_secret = serializers.CharField()


@extend_schema_field(
    {
        "oneOf": [{"type": "string"}, {"type": "object", "additionalProperties": True}],
        "description": "commune {insee_code, name}, quartier {code, name}, theme {code, label}, "
        "language and accessibility: a code.",
    }
)
class ItemValueField(serializers.JSONField):
    pass


class ReasonSerializer(serializers.Serializer[Any]):
    purpose = serializers.CharField(help_text="The ledger purpose that allowed this item.")
    scope = serializers.CharField(
        required=False, help_text="Resident only: the token's scope it falls under."
    )
    sharing = serializers.BooleanField(
        required=False, help_text="Resident only: the partner's sharing consent covers it."
    )
    sharing_purpose = serializers.CharField(
        required=False, allow_null=True, help_text="Resident only: the ledger purpose of that sharing."
    )


class PersonalisationItemSerializer(serializers.Serializer[Any]):
    kind = serializers.ChoiceField(choices=ITEM_KINDS)

    def get_fields(self) -> dict[str, Any]:
        fields = super().get_fields()
        fields["source"] = serializers.ChoiceField(
            choices=("declared", "inferred"), required=False, help_text="Themes only."
        )
        return fields

    value = ItemValueField()
    weight = serializers.FloatField(required=False, help_text="Inferred themes: the decayed weight now.")
    reason = ReasonSerializer()


class PersonalisationSerializer(serializers.Serializer[Any]):
    subject = serializers.ChoiceField(choices=("resident", "browser"))
    language = serializers.CharField(help_text="Language of the labels (the request's).")
    purposes = serializers.DictField(child=serializers.BooleanField())
    items = PersonalisationItemSerializer(many=True)
