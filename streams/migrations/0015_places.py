"""Places (issue 16 §3): a device's ``places_public`` setting (off: its places never reach the
lifestream) and the partial index its visits are read from."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("streams", "0014_device_sequence")]

    operations = [
        migrations.AddField(
            model_name="device",
            name="places_public",
            field=models.BooleanField(default=False),
        ),
        migrations.AddIndex(
            model_name="activity",
            index=models.Index(
                condition=models.Q(("device__isnull", False), ("verb__in", ["location", "place"])),
                fields=["device", "verb", "-occurred_at", "-id"],
                name="activity_place_idx",
            ),
        ),
    ]
