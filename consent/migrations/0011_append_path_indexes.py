"""Issue 14: every append writes each index of consent_ledgerevent, and each decision updates
its consent_consentstate row. Four foreign-key indexes no query needs go:

- consent_ledgerevent.subject_id and .purpose_id: the composite indexes
  consent_event_subject_purpose (subject, purpose, seq) and consent_event_purpose_time
  (purpose, occurred_at) lead with them;
- consent_consentstate.subject_id: the unique pair (subject, purpose) leads with it;
- consent_consentstate.event_id: nothing looks a state up by its event (events are never
  deleted); without it, the update a decision makes changes no indexed column, which PostgreSQL
  can make in place (a HOT update: no new index entries).

Only the indexes are dropped (the names Django gave them, the same on PostgreSQL and SQLite):
the foreign-key constraints stay as they are (Django's AlterField would drop and re-add them,
re-checking every row of the ledger under a lock).
"""

import django.db.models.deletion
from django.db import migrations, models

INDEXES = [
    ("consent_consentstate", "event_id", "consent_consentstate_event_id_8b527202"),
    ("consent_consentstate", "subject_id", "consent_consentstate_subject_id_b6752646"),
    ("consent_ledgerevent", "purpose_id", "consent_ledgerevent_purpose_id_fbbf93d7"),
    ("consent_ledgerevent", "subject_id", "consent_ledgerevent_subject_id_f0890cc5"),
]


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0010_daily_counts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[
                migrations.RunSQL(
                    sql=f'DROP INDEX IF EXISTS "{name}"',
                    reverse_sql=f'CREATE INDEX IF NOT EXISTS "{name}" ON "{table}" ("{column}")',
                )
                for table, column, name in INDEXES
            ],
            state_operations=[
                migrations.AlterField(
                    model_name="consentstate",
                    name="event",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="consent.ledgerevent",
                    ),
                ),
                migrations.AlterField(
                    model_name="consentstate",
                    name="subject",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="states",
                        to="consent.subject",
                    ),
                ),
                migrations.AlterField(
                    model_name="ledgerevent",
                    name="purpose",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="consent.purpose",
                    ),
                ),
                migrations.AlterField(
                    model_name="ledgerevent",
                    name="subject",
                    field=models.ForeignKey(
                        db_index=False,
                        on_delete=django.db.models.deletion.PROTECT,
                        related_name="+",
                        to="consent.subject",
                    ),
                ),
            ],
        ),
    ]
