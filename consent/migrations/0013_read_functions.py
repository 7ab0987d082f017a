"""Issue 14: the consent gate and the proof read as PL/pgSQL functions (PostgreSQL only).

Without prepared statements (`DATABASE_PREPARED_STATEMENTS`, off by default for poolers in
transaction mode older than PgBouncer 1.21) PostgreSQL parsed and planned the gate's
three-table join and the proof's three-part UNION at every call: ~200 µs of a gate lookup's
~300 µs of backend CPU (bench/README.md, "Ledger reads side by side"). As migration 0012 did
for the append, the statements now run inside PL/pgSQL functions, which keep each statement's
plan in the backend that runs it, with no name for the client or a pooler to keep: the caller's
own statement is a bare function call, cheap to plan.

- `consent_gate(wanted_user, wanted_browser, wanted_code, at_instant) -> boolean`: the gate now
  for an account (`wanted_user`) or, when it is NULL, a browser (`wanted_browser`, the id's
  hash): the same join as consent.gate's plain statement, and the decision `_gate_decision`
  makes, computed here; NULL when the purpose code is unknown (the caller raises).
  `at_instant` is the application's clock (`timezone.now()`), as the plain statement's
  parameter was: the server's clock is not used.
- `consent_gate_many(wanted_user, wanted_browser, codes, at_instant)`: the same for several
  codes of one subject, one row (code, granted) per known code.
- `consent_proof_hashes(leaves, levels, indexes)`: the ledger head's size (row level -1) and
  the stored leaf hashes (level 0, by their unique seq) and interior nodes (by their unique
  (level, index)) a proof needs, the statement consent.ledger ran (`_PROOF_PG_SQL`).

The decision's rule is written out here for the statuses of consent.models at the time of
this migration (GRANTING_EVENTS: given, renewed; OBJECTING_EVENTS: refused, withdrawn,
revoked); tests/consent/test_read_functions.py compares the functions' answers with the
plain statements and consent.gate's rule for every case, and the statuses with the models'.
SQLite runs the plain statements: nothing to create there.
"""

from django.db import migrations

_GATE_QUERY = """
        SELECT CASE
                 WHEN NOT p.is_active THEN false
                 WHEN p.requires_consent THEN
                   COALESCE(s.status IN ('given', 'renewed') AND NOT s.renewal_required
                            AND (s.valid_until IS NULL OR s.valid_until > at_instant), false)
                 ELSE NOT COALESCE(s.status IN ('refused', 'withdrawn', 'revoked')
                                   AND (s.valid_until IS NULL OR s.valid_until > at_instant), false)
               END
        INTO answer
        FROM consent_purpose p
        LEFT JOIN consent_subject sub ON {subject}
        LEFT JOIN consent_consentstate s ON s.subject_id = sub.id AND s.purpose_id = p.id
        WHERE p.code = wanted_code"""

_ACCOUNT = "sub.user_id = wanted_user AND sub.kind = 'account'"
_BROWSER = "sub.browser_id_hash = wanted_browser"

GATE = (
    """
CREATE OR REPLACE FUNCTION consent_gate(
    wanted_user uuid, wanted_browser text, wanted_code text, at_instant timestamptz
) RETURNS boolean
LANGUAGE plpgsql STABLE AS $$
DECLARE
    answer boolean;
BEGIN
    IF wanted_user IS NOT NULL THEN"""
    + _GATE_QUERY.replace("{subject}", _ACCOUNT)
    + """;
    ELSE"""
    + _GATE_QUERY.replace("{subject}", _BROWSER)
    + """;
    END IF;
    RETURN answer;
END
$$
"""
)

_MANY_QUERY = (
    _GATE_QUERY.replace("SELECT CASE", "SELECT p.code::text, CASE")
    .replace("INTO answer\n", "")
    .replace("WHERE p.code = wanted_code", "WHERE p.code = ANY(codes)")
)

GATE_MANY = (
    """
CREATE OR REPLACE FUNCTION consent_gate_many(
    wanted_user uuid, wanted_browser text, codes text[], at_instant timestamptz
) RETURNS TABLE (code text, granted boolean)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    IF wanted_user IS NOT NULL THEN
        RETURN QUERY"""
    + _MANY_QUERY.replace("{subject}", _ACCOUNT)
    + """;
    ELSE
        RETURN QUERY"""
    + _MANY_QUERY.replace("{subject}", _BROWSER)
    + """;
    END IF;
END
$$
"""
)

PROOF_HASHES = """
CREATE OR REPLACE FUNCTION consent_proof_hashes(leaves bigint[], levels smallint[], indexes bigint[])
RETURNS TABLE (level integer, idx bigint, hash bytea)
LANGUAGE plpgsql STABLE AS $$
#variable_conflict use_column
BEGIN
    RETURN QUERY
    SELECT -1, h.size, NULL::bytea FROM consent_ledgerhead h WHERE h.id = 1
    UNION ALL
    SELECT 0, e.seq, e.leaf_hash FROM consent_ledgerevent e WHERE e.seq = ANY(leaves)
    UNION ALL
    SELECT n.level::integer, n."index", n.hash
    FROM unnest(levels, indexes) AS k(l, i)
    JOIN consent_merklenode n ON n.level = k.l AND n."index" = k.i;
END
$$
"""

DROPS = (
    "DROP FUNCTION IF EXISTS consent_proof_hashes(bigint[], smallint[], bigint[])",
    "DROP FUNCTION IF EXISTS consent_gate_many(uuid, text, text[], timestamptz)",
    "DROP FUNCTION IF EXISTS consent_gate(uuid, text, text, timestamptz)",
)


def create_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in (GATE, GATE_MANY, PROOF_HASHES):
            schema_editor.execute(statement, params=None)


def drop_functions(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        for statement in DROPS:
            schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0012_append_functions"),
    ]

    operations = [migrations.RunPython(create_functions, drop_functions, elidable=False)]
