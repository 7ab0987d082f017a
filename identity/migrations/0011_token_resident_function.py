"""Issue 14: the resident read of userinfo and introspection as a PL/pgSQL function (PostgreSQL only).

Without prepared statements (`DATABASE_PREPARED_STATEMENTS`, off by default) PostgreSQL
parsed and planned the read of a resident token — the token's row by its SHA-256 joined to
its resident, and at userinfo the consent gate's three-table join — at every request; the
worker waited for it (~1.1 ms of wall time per read on a loaded 2-core VM, bench/README.md
"W3: the resident read as a function"), and the client's CPU grows with that wait.
As consent 0013 did for the gate, the read runs inside a function whose statement keeps its
plan in the backend that runs it, with no name for the client or a pooler to keep:

- `oidc_token_resident(wanted_checksum, at_instant) -> SETOF identity_user`: the resident of
  the access token whose `token_checksum` is `wanted_checksum` and whose `expires` is after
  `at_instant` (the application's clock, as the plain statement's parameter was); no row for
  an unknown, revoked (deleted) or expired token. The caller's statement is a bare call that
  selects, from the returned row, only the columns it needs (identity.oidc.access_tokens),
  and at userinfo adds `consent_gate(u.id, NULL, purpose, at)` (consent 0013) for the
  ledger's answer.

The whole row type follows the table (a later column is returned too, never sent unless
selected). tests/oidc/test_resident_read_function.py compares the function form with the
plain statement (kept as the reference and for SQLite) for every token and gate state.
"""

from django.db import migrations

TOKEN_RESIDENT = """
CREATE OR REPLACE FUNCTION oidc_token_resident(wanted_checksum varchar, at_instant timestamptz)
RETURNS SETOF identity_user
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN QUERY
    SELECT u.*
    FROM identity_user u
    JOIN identity_accesstoken t ON t.user_id = u.id
    WHERE t.token_checksum = wanted_checksum AND t.expires > at_instant;
END
$$
"""

DROP = "DROP FUNCTION IF EXISTS oidc_token_resident(varchar, timestamptz)"


def create_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(TOKEN_RESIDENT, params=None)


def drop_function(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("identity", "0010_dpop"),
        # The userinfo read calls consent_gate (consent 0013) in the same statement.
        ("consent", "0013_read_functions"),
    ]

    operations = [migrations.RunPython(create_function, drop_function, elidable=False)]
