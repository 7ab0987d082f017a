"""Issue 14: two indexes of consent_ledgerevent that no query reads go (every append writes an
entry into each index of the table).

consent_ledgerevent.partner_client_id keeps one index, not two.

`db_index=True` on a CharField gives PostgreSQL two indexes: a plain btree and a
`varchar_pattern_ops` twin ("_like") that only serves `LIKE 'prefix%'` / `startswith`. No query
compares partner_client_id with a pattern: the DPO console and API filter it with `=`
(consent.selectors.events_search, consent.dpo.selectors._read_partner), list its distinct
values (`partners_known`), and the admin's search (`icontains`: `UPPER(...) LIKE '%…%'`) can use
neither index. Every append wrote an entry into the twin for nothing (bench/README.md, branch
`record`). The plain btree stays, renamed `consent_event_partner` and declared in the model's
Meta.indexes (a renaming on PostgreSQL: no rebuild, no lock on the ledger beyond the catalogue's;
SQLite has no "_like" twin and cannot rename an index: there the index is created again under
its new name). tests/perf/test_query_plans.py checks that the partner filter still reads by
index and that no pattern-ops index is left on the table.

consent_ledgerevent.notice_id loses its foreign-key index (the constraint stays, deferred as
before). No query looks events up by their notice: the ledger's readers (gate, DPO console and
statistics, exports, proofs, verification) read by subject, purpose, time, partner or seq, and
an event's notice is read by the notice's primary key. The only statement that would search
events by notice is the reference check of a notice's DELETE (Django's PROTECT, PostgreSQL's
foreign key), and nothing deletes a notice: published notices are the evidence consents were
given under (the admin is read-only, no service deletes one, a partner client's deletion sets
its purposes' client to NULL). Such a DELETE, by hand, would scan the ledger once.
"""

import django.db.models.deletion
from django.db import migrations, models

TABLE = "consent_ledgerevent"
OLD = "consent_ledgerevent_partner_client_id_a059b4ab"
LIKE = OLD + "_like"
NEW = "consent_event_partner"
NOTICE = "consent_ledgerevent_notice_id_30993922"


def forwards(apps, schema_editor):
    schema_editor.execute(f'DROP INDEX IF EXISTS "{NOTICE}"', params=None)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'DROP INDEX IF EXISTS "{LIKE}"', params=None)
        schema_editor.execute(f'ALTER INDEX IF EXISTS "{OLD}" RENAME TO "{NEW}"', params=None)
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{NEW}" ON "{TABLE}" ("partner_client_id")', params=None)
    else:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{OLD}"', params=None)
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{NEW}" ON "{TABLE}" ("partner_client_id")', params=None)


def backwards(apps, schema_editor):
    schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{NOTICE}" ON "{TABLE}" ("notice_id")', params=None)
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f'ALTER INDEX IF EXISTS "{NEW}" RENAME TO "{OLD}"', params=None)
        schema_editor.execute(
            f'CREATE INDEX IF NOT EXISTS "{LIKE}" ON "{TABLE}" ("partner_client_id" varchar_pattern_ops)',
            params=None,
        )
    else:
        schema_editor.execute(f'DROP INDEX IF EXISTS "{NEW}"', params=None)
        schema_editor.execute(f'CREATE INDEX IF NOT EXISTS "{OLD}" ON "{TABLE}" ("partner_client_id")', params=None)


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0013_read_functions"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(forwards, backwards, elidable=False)],
            state_operations=[
                migrations.AlterField(
                    model_name="ledgerevent",
                    name="partner_client_id",
                    field=models.CharField(blank=True, max_length=100),
                ),
                migrations.AlterField(
                    model_name="ledgerevent",
                    name="notice",
                    field=models.ForeignKey(
                        blank=True,
                        db_index=False,
                        null=True,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="consent.privacynotice",
                    ),
                ),
                migrations.AddIndex(
                    model_name="ledgerevent",
                    index=models.Index(fields=["partner_client_id"], name=NEW),
                ),
            ],
        ),
    ]
