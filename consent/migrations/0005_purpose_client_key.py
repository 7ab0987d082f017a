"""Purpose.scopes becomes Purpose.client_key: consent knows no OAuth scope (docs/architecture.md).

A rename, not a new column: the keys of existing sharing purposes are kept. The uniqueness
constraint is dropped and made again around the rename so that it names the new column.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("consent", "0004_browser_secret"),
    ]

    operations = [
        migrations.RemoveConstraint(model_name="purpose", name="consent_purpose_one_per_client_scope_set"),
        migrations.RenameField(model_name="purpose", old_name="scopes", new_name="client_key"),
        migrations.AlterField(
            model_name="purpose",
            name="client_key",
            field=models.CharField(blank=True, max_length=500, verbose_name="clé chez le partenaire"),
        ),
        migrations.AddConstraint(
            model_name="purpose",
            constraint=models.UniqueConstraint(
                condition=models.Q(("client__isnull", False)),
                fields=("client", "client_key"),
                name="consent_purpose_one_per_client_key",
            ),
        ),
    ]
