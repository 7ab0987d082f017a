"""Issue 14: an append's first two statements as PL/pgSQL functions (PostgreSQL only).

Parsing and planning an append's statements at every call cost about half of its PostgreSQL
CPU (bench/README.md, "an append in three statements"). Prepared statements remove that cost
but live in the server session under a name, which a pooler in transaction mode older than
PgBouncer 1.21 loses (`DATABASE_PREPARED_STATEMENTS`, off by default). PL/pgSQL keeps the plan
of each statement of a function in the backend that runs it, with no name for the client to
find again: the append calls a function, whose statements are planned once per connection
whatever the pooler does.

- `consent_writer_head(subject_lock)`: the head row under `FOR KEY SHARE` with the position
  check (no Merkle node, no signed tree head beyond its size), one query, one snapshot; then,
  only once that row is locked and only if there is one, the subject's advisory lock
  (`pg_advisory_xact_lock`, none when `subject_lock` is NULL): the head first, then the
  subject, as `consent.ledger.writer_head` always took them.
- `consent_decision_context(user_id, browser_hash, purpose_code)`: the purpose and its partner's
  client_id, the notice in force, the subject (an account's, or a browser's when `user_id` is
  NULL) and its current state for the purpose, the read `consent.services._decision_context`
  makes after the locks (STABLE: it runs in the snapshot of the statement that calls it, taken
  after the locks, so it sees what the subject's previous decision committed).

The queries are those the Python code ran (consent.ledger._WRITER_HEAD_SQL,
consent.services._CONTEXT_SQL), text columns cast to text for the functions' result types;
tests/consent/test_append_path.py compares the functions' rows with the plain queries'. SQLite
runs the plain queries: nothing to create there.
"""

from django.db import migrations

WRITER_HEAD = """
CREATE OR REPLACE FUNCTION consent_writer_head(subject_lock bigint)
RETURNS TABLE (size bigint, root_hash bytea, frontier bytea, nodes boolean, heads boolean)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT h.size, h.root_hash, h.frontier,
           EXISTS (SELECT 1 FROM consent_merklenode n WHERE n.level = 1 AND n."index" = h.size / 2),
           EXISTS (SELECT 1 FROM consent_treehead t WHERE t.tree_size > h.size)
    FROM consent_ledgerhead h WHERE h.id = 1 FOR KEY SHARE;
    IF FOUND AND subject_lock IS NOT NULL THEN
        PERFORM pg_advisory_xact_lock(subject_lock);
    END IF;
END
$$
"""

_CONTEXT_QUERY = """
    SELECT p.id, p.code::text, p.client_id, p.consent_lifetime_days, p.requires_consent, p.is_active,
           COALESCE(c.client_id, '')::text,
           n.id, n.version, n.content_sha256::text,
           s.id, s.kind::text, s.user_id, s.browser_id_hash::text, s.wrapped_key,
           st.id, st.status::text, st.valid_until, st.renewal_required, st.event_id
    FROM consent_purpose p
    LEFT JOIN {client} c ON c.id = p.client_id
    LEFT JOIN consent_privacynotice n ON n.id = (
        SELECT n2.id FROM consent_privacynotice n2 WHERE n2.purpose_id = p.id OR n2.purpose_id IS NULL
        ORDER BY n2.published_at DESC, n2.id DESC LIMIT 1
    )
    LEFT JOIN consent_subject s ON {subject}
    LEFT JOIN consent_consentstate st ON st.subject_id = s.id AND st.purpose_id = p.id
    WHERE p.code = wanted_code"""

DECISION_CONTEXT = (
    """
CREATE OR REPLACE FUNCTION consent_decision_context(wanted_user uuid, wanted_browser text, wanted_code text)
RETURNS TABLE (
    purpose_id bigint, purpose_code text, purpose_client_id bigint, consent_lifetime_days integer,
    requires_consent boolean, is_active boolean, partner_client_id text,
    notice_id bigint, notice_version integer, notice_sha256 text,
    subject_id uuid, subject_kind text, subject_user_id uuid, subject_browser_id_hash text,
    subject_wrapped_key bytea,
    state_id bigint, state_status text, state_valid_until timestamptz, state_renewal_required boolean,
    state_event_id uuid
)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    IF wanted_user IS NOT NULL THEN
        RETURN QUERY"""
    + _CONTEXT_QUERY.replace("{subject}", "s.user_id = wanted_user AND s.kind = 'account'")
    + """;
    ELSE
        RETURN QUERY"""
    + _CONTEXT_QUERY.replace("{subject}", "s.browser_id_hash = wanted_browser")
    + """;
    END IF;
END
$$
"""
)

# The event's columns, in the order of the function's parameters after the entry's two parts.
EVENT_COLUMNS = (
    "id",
    "event_type",
    "subject_id",
    "purpose_id",
    "purpose_code",
    "notice_id",
    "notice_version",
    "notice_sha256",
    "collection_method",
    "actor_type",
    "actor_id",
    "partner_client_id",
    "occurred_at",
    "valid_until",
    "linked_from",
    "details_ciphertext",
)
APPEND_EVENT = (
    """
CREATE OR REPLACE FUNCTION consent_append_event(
    with_state boolean, entry_before bytea, entry_after bytea,
    e_id uuid, e_event_type text, e_subject_id uuid, e_purpose_id bigint, e_purpose_code text,
    e_notice_id bigint, e_notice_version integer, e_notice_sha256 text, e_collection_method text,
    e_actor_type text, e_actor_id text, e_partner_client_id text, e_occurred_at timestamptz,
    e_valid_until timestamptz, e_linked_from uuid, e_details_ciphertext bytea
)
RETURNS TABLE (seq bigint, leaf_hash bytea)
LANGUAGE plpgsql VOLATILE AS $$
#variable_conflict use_column
DECLARE
    taken bigint;
BEGIN
    IF with_state THEN
        INSERT INTO consent_consentstate
            (subject_id, purpose_id, status, event_id, valid_until, renewal_required, updated_at)
        VALUES (e_subject_id, e_purpose_id, e_event_type, e_id, e_valid_until, false, e_occurred_at)
        ON CONFLICT (subject_id, purpose_id) DO UPDATE SET
            status = excluded.status, event_id = excluded.event_id, valid_until = excluded.valid_until,
            renewal_required = excluded.renewal_required, updated_at = excluded.updated_at;
    END IF;
    UPDATE consent_ledgersequence SET next_seq = next_seq + 1 WHERE id = 1 RETURNING next_seq - 1 INTO taken;
    IF NOT FOUND THEN
        RETURN;
    END IF;
    RETURN QUERY
    INSERT INTO consent_ledgerevent ("""
    + ", ".join(EVENT_COLUMNS)
    + """, seq, leaf_hash)
    VALUES ("""
    + ", ".join(f"e_{column}" for column in EVENT_COLUMNS)
    + """, taken,
            sha256(entry_before || convert_to(taken::text, 'UTF8') || entry_after))
    RETURNING consent_ledgerevent.seq, consent_ledgerevent.leaf_hash;
END
$$
"""
)

DROPS = (
    "DROP FUNCTION IF EXISTS consent_append_event("
    "boolean, bytea, bytea, uuid, text, uuid, bigint, text, bigint, integer, text, text, text, text, text, "
    "timestamptz, timestamptz, uuid, bytea)",
    "DROP FUNCTION IF EXISTS consent_decision_context(uuid, text, text)",
    "DROP FUNCTION IF EXISTS consent_writer_head(bigint)",
)


def create_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        # The partner clients' table (OAUTH2_PROVIDER_APPLICATION_MODEL: identity.Client).
        client = apps.get_model("consent", "Purpose")._meta.get_field("client").related_model
        table = schema_editor.connection.ops.quote_name(client._meta.db_table)
        for statement in (WRITER_HEAD, DECISION_CONTEXT.replace("{client}", table), APPEND_EVENT):
            schema_editor.execute(statement, params=None)


def drop_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in DROPS:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0011_append_path_indexes"),
    ]

    operations = [migrations.RunPython(create_functions, drop_functions, elidable=False)]
