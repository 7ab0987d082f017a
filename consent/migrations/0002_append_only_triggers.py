"""Database-level refusal of UPDATE and DELETE on the append-only ledger tables.

PostgreSQL: a PL/pgSQL trigger function raising `restrict_violation` (SQLSTATE 23001).
SQLite: BEFORE UPDATE/DELETE triggers calling RAISE(ABORT). Other backends: nothing
(the model and queryset still refuse). Only a database owner/superuser can disable these
triggers (`ALTER TABLE ... DISABLE TRIGGER`): run the application with a role that does not
own the tables (docs/ledger.md).
"""

from django.db import migrations

TABLES = ("consent_ledgerevent", "consent_merklenode", "consent_treehead")

POSTGRES_FUNCTION = """
CREATE OR REPLACE FUNCTION consent_refuse_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING
        MESSAGE = 'consent ledger is append-only: ' || TG_OP || ' on ' || TG_TABLE_NAME || ' refused',
        ERRCODE = 'restrict_violation';
END
$$
"""


def _statements(vendor: str) -> list[str]:
    if vendor == "postgresql":
        statements = [POSTGRES_FUNCTION]
        for table in TABLES:
            statements.append(
                f"CREATE TRIGGER {table}_append_only BEFORE UPDATE OR DELETE ON {table} "
                "FOR EACH ROW EXECUTE FUNCTION consent_refuse_change()"
            )
        return statements
    if vendor == "sqlite":
        statements = []
        for table in TABLES:
            for operation in ("UPDATE", "DELETE"):
                statements.append(
                    f"CREATE TRIGGER {table}_no_{operation.lower()} BEFORE {operation} ON {table} "
                    f"BEGIN SELECT RAISE(ABORT, 'consent ledger is append-only: {operation} on {table} refused'); END"
                )
        return statements
    return []


def _drop_statements(vendor: str) -> list[str]:
    if vendor == "postgresql":
        drops = [f"DROP TRIGGER IF EXISTS {table}_append_only ON {table}" for table in TABLES]
        return [*drops, "DROP FUNCTION IF EXISTS consent_refuse_change()"]
    if vendor == "sqlite":
        return [
            f"DROP TRIGGER IF EXISTS {table}_no_{operation}" for table in TABLES for operation in ("update", "delete")
        ]
    return []


def create_triggers(apps, schema_editor):
    for statement in _statements(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


def drop_triggers(apps, schema_editor):
    for statement in _drop_statements(schema_editor.connection.vendor):
        schema_editor.execute(statement, params=None)


class Migration(migrations.Migration):
    dependencies = [("consent", "0001_ledger")]

    operations = [migrations.RunPython(create_triggers, drop_triggers, elidable=False)]
