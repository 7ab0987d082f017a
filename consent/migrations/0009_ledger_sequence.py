"""The leaf-index counter of the sequenced ledger (consent.models.LedgerSequence), started
after the events already stored."""

from django.db import migrations, models
from django.db.models import Max


def seed(apps, schema_editor):
    LedgerEvent = apps.get_model("consent", "LedgerEvent")
    LedgerSequence = apps.get_model("consent", "LedgerSequence")
    top = LedgerEvent.objects.aggregate(top=Max("seq"))["top"]
    LedgerSequence.objects.get_or_create(pk=1, defaults={"next_seq": 0 if top is None else top + 1})


class Migration(migrations.Migration):
    dependencies = [("consent", "0008_rights_partner_data")]

    operations = [
        migrations.CreateModel(
            name="LedgerSequence",
            fields=[
                ("id", models.PositiveSmallIntegerField(default=1, primary_key=True, serialize=False)),
                ("next_seq", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.CheckConstraint(condition=models.Q(("id", 1)), name="consent_ledger_sequence_singleton")
                ],
            },
        ),
        migrations.RunPython(seed, migrations.RunPython.noop),
    ]
