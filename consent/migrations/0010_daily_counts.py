"""Pre-aggregated counts of ledger events per day, purpose and type for the DPO statistics
(consent.models.DailyCount), filled from the events the sequencer has already integrated."""

from zoneinfo import ZoneInfo

from django.conf import settings
from django.db import migrations, models
from django.db.models import Count
from django.db.models.functions import TruncDate


def fill(apps, schema_editor):
    LedgerEvent = apps.get_model("consent", "LedgerEvent")
    LedgerHead = apps.get_model("consent", "LedgerHead")
    DailyCount = apps.get_model("consent", "DailyCount")
    head = LedgerHead.objects.filter(pk=1).first()
    if head is None or not head.size:
        return
    rows = (
        LedgerEvent.objects.filter(seq__gte=0, seq__lt=head.size, linked_from__isnull=True)
        .annotate(day=TruncDate("occurred_at", tzinfo=ZoneInfo(settings.TIME_ZONE)))
        .values("day", "purpose_code", "event_type")
        .annotate(n=Count("id"))
        .order_by()
    )
    DailyCount.objects.bulk_create(
        [
            DailyCount(day=row["day"], purpose_code=row["purpose_code"], event_type=row["event_type"], count=row["n"])
            for row in rows
        ],
        batch_size=1000,
    )


class Migration(migrations.Migration):
    dependencies = [("consent", "0009_ledger_sequence")]

    operations = [
        migrations.CreateModel(
            name="DailyCount",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("day", models.DateField()),
                ("purpose_code", models.CharField(max_length=255)),
                ("event_type", models.CharField(max_length=16)),
                ("count", models.BigIntegerField(default=0)),
            ],
            options={
                "constraints": [
                    models.UniqueConstraint(
                        fields=("day", "purpose_code", "event_type"), name="consent_daily_count_unique"
                    )
                ],
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
