"""The bodies of the consent APIs, described for the OpenAPI document (drf-spectacular).

The views build their JSON by hand (consent.api.cookie, consent.api.receipts, consent.api.dpo,
consent.dpo.selectors): these serializers only describe it, for `extend_schema`. They are
never used to validate or render a request. tests/api/test_openapi.py checks real answers of
the views against the schema generated from them, so the two cannot drift apart unnoticed.
"""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from common.openapi import ProblemSerializer
from consent.models import ActorType, CollectionMethod, EventType

Serializer = serializers.Serializer[Any]

# The ledger's vocabularies, by value: one enum component each (SPECTACULAR_SETTINGS
# ENUM_NAME_OVERRIDES names them), whatever the field that uses one is called.
EVENT_TYPES = list(EventType.values)
COLLECTION_METHODS = list(CollectionMethod.values)
ACTOR_TYPES = list(ActorType.values)


class LocalisedTextSerializer(Serializer):
    """A text in French and English."""

    fr = serializers.CharField()
    en = serializers.CharField()


# --- Cookie consent (GET/POST /consent/api/v1/cookie/…) -------------------------------------------


class CookiePartnerSerializer(Serializer):
    name = serializers.CharField()
    policy_uri = serializers.URLField(allow_null=True, help_text="The partner's own privacy policy.")


class CookieControllerSerializer(Serializer):
    name = serializers.CharField()
    role = serializers.ChoiceField(choices=["controller"])
    contact = serializers.CharField()
    email = serializers.EmailField()
    url = serializers.URLField()


class CookieGlobalNoticeSerializer(Serializer):
    version = serializers.IntegerField(min_value=1)
    sha256 = serializers.CharField(help_text="SHA-256 of the notice's text, hex.")
    url = serializers.URLField()


class CookiePurposeNoticeSerializer(Serializer):
    version = serializers.IntegerField(min_value=1)
    sha256 = serializers.CharField(help_text="SHA-256 of the notice's text, hex.")
    published_at = serializers.DateTimeField()
    scope = serializers.ChoiceField(choices=["purpose", "global"])


class LawfulBasisSerializer(Serializer):
    gdpr = serializers.CharField(help_text="The GDPR article, e.g. `Art. 6(1)(a)`.")
    dpv = serializers.CharField(help_text="The W3C Data Privacy Vocabulary legal basis.")


class DataCategorySerializer(Serializer):
    code = serializers.CharField()
    kind = serializers.CharField(help_text="`declared`, `inferred`, `observed`…")
    fr = serializers.CharField()
    en = serializers.CharField()


class CookiePurposeSerializer(Serializer):
    code = serializers.CharField(help_text="The purpose's code, the key of `choices`.")
    title = LocalisedTextSerializer()
    description = LocalisedTextSerializer()
    requires_consent = serializers.BooleanField()
    exempt = serializers.BooleanField(help_text="Needs no consent (exempt audience measurement).")
    default = serializers.BooleanField(help_text="The choice before the visitor makes one.")
    lawful_basis = LawfulBasisSerializer()
    choice_kept_days = serializers.IntegerField(help_text="How long a choice is kept (at most 395 days).")
    retention_days = serializers.IntegerField(allow_null=True, help_text="null: set by the recipient.")
    data_categories = DataCategorySerializer(many=True)
    recipients = serializers.ListField(child=serializers.CharField())
    notice = CookiePurposeNoticeSerializer(allow_null=True)


class CookieConfigSerializer(Serializer):
    client_id = serializers.CharField()
    partner = CookiePartnerSerializer()
    controllers = CookieControllerSerializer(many=True)
    policy_url = serializers.URLField()
    notice = CookieGlobalNoticeSerializer(allow_null=True)
    purposes = CookiePurposeSerializer(many=True)


class CookieDecisionSerializer(Serializer):
    status = serializers.ChoiceField(choices=EVENT_TYPES, help_text="The last decision's event type.")
    decided_at = serializers.DateTimeField()
    valid_until = serializers.DateTimeField(allow_null=True)
    receipt_id = serializers.UUIDField(help_text="The event whose receipt proves the decision.")


class CookieStateSerializer(Serializer):
    browser_id = serializers.UUIDField()
    decided = serializers.BooleanField(help_text="Whether every purpose that needs consent has a choice.")
    choices = serializers.DictField(
        child=serializers.BooleanField(), help_text="Per purpose code: allowed now (silence is refusal)."
    )
    decisions = serializers.DictField(
        child=CookieDecisionSerializer(allow_null=True),
        help_text="Per purpose code: the decision in force, or null (none yet, or to renew).",
    )
    expires_at = serializers.DateTimeField(allow_null=True, help_text="When the first consent lapses.")


class CookieChoicesSerializer(Serializer):
    client_id = serializers.CharField(
        help_text="The partner's client_id (the same as in the address, if any)."
    )
    browser_id = serializers.UUIDField(
        required=False, help_text="The widget's browser id; omitted the first time (one is created)."
    )
    browser_secret = serializers.CharField(
        required=False,
        max_length=128,
        help_text="The secret returned when the browser was registered; required once it has one.",
    )
    choices = serializers.DictField(
        child=serializers.BooleanField(), help_text="Per purpose code of the config: true or false."
    )


class CookieChoicesResultSerializer(Serializer):
    browser_id = serializers.UUIDField()
    browser_secret = serializers.CharField(
        required=False, help_text="Only when this request registered the browser: keep it, it is sent once."
    )
    receipt_ids = serializers.ListField(child=serializers.UUIDField(), help_text="One event per choice.")
    choices = serializers.DictField(child=serializers.BooleanField())
    expires_at = serializers.DateTimeField(allow_null=True)
    linked_to_account = serializers.BooleanField(
        allow_null=True, help_text="true when attached to the signed-in resident (our own pages), else null."
    )


class CookieAttachSerializer(Serializer):
    client_id = serializers.CharField()
    browser_id = serializers.UUIDField()
    browser_secret = serializers.CharField(max_length=128)
    link_ticket = serializers.CharField(help_text="`consent_link_ticket` from the redirect after sign-in.")


class CookieLinkSerializer(Serializer):
    browser_id = serializers.UUIDField()
    browser_secret = serializers.CharField(max_length=128)


class CookieLinkedSerializer(Serializer):
    browser_id = serializers.UUIDField()
    linked_event_ids = serializers.ListField(
        child=serializers.UUIDField(), help_text="The events now attached to the account."
    )


# --- Receipt verification (POST /consent/api/v1/receipts/verify) --------------------------------


@extend_schema_field(
    {
        "oneOf": [{"type": "object"}, {"type": "string"}],
        "description": "The inclusion proof (from the resident's history or the DPO API), as an object "
        "or as its JSON text.",
    }
)
class ProofField(serializers.JSONField):
    pass


class ReceiptVerifySerializer(Serializer):
    receipt = serializers.CharField(help_text="The receipt, a JWS in compact serialisation.")
    proof = ProofField(required=False)


class SignatureCheckSerializer(Serializer):
    valid = serializers.BooleanField()
    error = serializers.CharField(allow_null=True, help_text="Why not, as a reason code.")


class ReceiptStatementSerializer(Serializer):
    event_id = serializers.CharField()
    purpose = serializers.CharField(allow_null=True)
    purpose_title = serializers.CharField(allow_null=True)
    event_type = serializers.CharField(allow_null=True)
    occurred_at = serializers.DateTimeField(allow_null=True)
    validity_duration = serializers.CharField(allow_null=True)
    collection_method = serializers.CharField(allow_null=True)
    notice_version = serializers.IntegerField(allow_null=True)
    log_id = serializers.CharField(allow_null=True)
    leaf_index = serializers.IntegerField(allow_null=True)
    leaf_hash = serializers.CharField(allow_null=True)
    kid = serializers.CharField(allow_null=True)


class InclusionCheckSerializer(Serializer):
    verified = serializers.BooleanField()
    error = serializers.CharField(allow_null=True)
    tree_size = serializers.IntegerField(allow_null=True)
    root_hash = serializers.CharField(allow_null=True)
    tree_head_timestamp = serializers.DateTimeField(allow_null=True)


class ReceiptCheckSerializer(Serializer):
    valid = serializers.BooleanField(
        help_text="The signature holds and, with a proof, the event is included."
    )
    signature = SignatureCheckSerializer()
    receipt = ReceiptStatementSerializer(allow_null=True, help_text="What the receipt states, if readable.")
    inclusion = InclusionCheckSerializer(allow_null=True, help_text="Only when a proof was sent.")


# --- DPO API (/dpo/api/v1/…) -------------------------------------------------------------------


class EventLinksSerializer(Serializer):
    self = serializers.CharField()
    proof = serializers.CharField()
    receipt = serializers.CharField()


class LedgerEventSerializer(Serializer):
    id = serializers.UUIDField()
    seq = serializers.IntegerField(min_value=0, help_text="The event's position in the ledger.")
    event_type = serializers.ChoiceField(choices=EVENT_TYPES)
    subject = serializers.UUIDField(help_text="The pseudonymous subject.")
    purpose = serializers.CharField()
    notice_version = serializers.IntegerField(allow_null=True)
    notice_sha256 = serializers.CharField(allow_null=True)
    collection_method = serializers.ChoiceField(choices=COLLECTION_METHODS)
    actor_type = serializers.ChoiceField(choices=ACTOR_TYPES)
    actor_id = serializers.CharField(allow_null=True)
    partner = serializers.CharField(allow_null=True, help_text="The partner's client_id.")
    occurred_at = serializers.DateTimeField()
    valid_until = serializers.DateTimeField(allow_null=True)
    linked_from = serializers.UUIDField(allow_null=True, help_text="The browser event this one copies.")
    has_details = serializers.BooleanField()
    links = EventLinksSerializer()


class LedgerEventPageSerializer(Serializer):
    count = serializers.IntegerField()
    page = serializers.IntegerField()
    pages = serializers.IntegerField()
    page_size = serializers.IntegerField()
    next = serializers.CharField(allow_null=True)
    previous = serializers.CharField(allow_null=True)
    resident_found = serializers.BooleanField(
        allow_null=True, help_text="With `user_email` or `resident`: whether that account exists."
    )
    results = LedgerEventSerializer(many=True)


class LedgerEventDetailSerializer(LedgerEventSerializer):
    details = serializers.DictField(
        allow_null=True, help_text="The decrypted details (read logged); null once erased."
    )
    details_erased = serializers.BooleanField(help_text="The subject's key was destroyed (erasure).")


class InclusionProofSerializer(Serializer):
    log_id = serializers.CharField()
    leaf_index = serializers.IntegerField(min_value=0)
    entry = serializers.CharField(help_text="The ledger entry whose hash is the leaf (RFC 9162).")
    leaf_hash = serializers.CharField()
    tree_size = serializers.IntegerField()
    root_hash = serializers.CharField()
    inclusion_path = serializers.ListField(child=serializers.CharField(), help_text="Hex digests.")
    signed_tree_head = serializers.CharField(help_text="The tree head's signature, a JWS.")


class StatsSeriesSerializer(Serializer):
    grants = serializers.ListField(child=serializers.CharField())
    refusals = serializers.ListField(child=serializers.CharField())
    withdrawals = serializers.ListField(child=serializers.CharField())
    expiries = serializers.ListField(child=serializers.CharField())


class StatsCountsSerializer(Serializer):
    grants = serializers.IntegerField()
    refusals = serializers.IntegerField()
    withdrawals = serializers.IntegerField()
    expiries = serializers.IntegerField()


class StatsBucketSerializer(StatsCountsSerializer):
    start = serializers.DateField()


class PurposeStatsSerializer(Serializer):
    code = serializers.CharField()
    title = serializers.CharField()
    totals = StatsCountsSerializer()
    buckets = StatsBucketSerializer(many=True)


class StatsSerializer(Serializer):
    purpose = serializers.CharField(required=False)
    bucket = serializers.ChoiceField(choices=["day", "week", "month"])
    # `from` (a Python keyword, so not a class attribute) is added by get_fields.
    to = serializers.DateField()
    timezone = serializers.CharField()
    series = StatsSeriesSerializer(help_text="Which event types each series counts.")
    purposes = PurposeStatsSerializer(many=True)

    def get_fields(self) -> dict[str, serializers.Field[Any, Any, Any, Any]]:
        fields = super().get_fields()
        fields["from"] = serializers.DateField()
        return fields


class RegisterControllerSerializer(Serializer):
    name = serializers.CharField()
    address = serializers.CharField()
    email = serializers.EmailField()
    phone = serializers.CharField()
    url = serializers.URLField()


class RegisterDPOSerializer(Serializer):
    contact = serializers.CharField()
    email = serializers.EmailField()


class RegisterSerializer(Serializer):
    generated_at = serializers.DateTimeField()
    language = serializers.ChoiceField(choices=["fr", "en"])
    controller = RegisterControllerSerializer()
    dpo = RegisterDPOSerializer()
    security_measures = serializers.ListField(child=serializers.CharField())
    processing = serializers.ListField(
        child=serializers.DictField(),
        help_text="One record of processing per purpose (GDPR Art. 30(1)): purpose, legal basis, "
        "data categories, recipients, retention, data subjects, transfers.",
    )


class LedgerProblemSerializer(Serializer):
    kind = serializers.CharField(help_text="altered, malformed, missing, unexpected, tree_head, head, node…")
    detail = serializers.CharField()
    seq = serializers.IntegerField(allow_null=True)
    event_id = serializers.CharField(allow_null=True)
    tree_head_id = serializers.IntegerField(allow_null=True)


class LedgerVerificationSerializer(Serializer):
    ok = serializers.BooleanField()
    size = serializers.IntegerField()
    root_hash = serializers.CharField()
    tree_heads_checked = serializers.IntegerField()
    problems = LedgerProblemSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())
    seconds = serializers.FloatField()


class TreeHeadSerializer(Serializer):
    id = serializers.IntegerField()
    tree_size = serializers.IntegerField()
    root_hash = serializers.CharField()
    timestamp = serializers.DateTimeField()
    kid = serializers.CharField()
    signature = serializers.CharField(help_text="The signed tree head, a JWS.")
    log_id = serializers.CharField()


class LedgerTamperedProblemSerializer(ProblemSerializer):
    """409 `urn:cum:problem:ledger_tampered` of the DPO API: the answer would rest on altered rows."""

    positions = serializers.ListField(child=serializers.IntegerField())
    event_ids = serializers.ListField(child=serializers.CharField())
    problems = serializers.ListField(child=serializers.CharField())
    verify = serializers.CharField(help_text="Where to run the full verification (POST).")
    verification_page = serializers.CharField()

    class Meta:
        ref_name = "LedgerTamperedProblem"
