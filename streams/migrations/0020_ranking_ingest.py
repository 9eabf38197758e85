# Ranking at ingest: the queue of contacts to re-score (RankPending) becomes a queue of
# (contact, activity) pairs to fold into ConversationDay (RankTouch); ingest no longer upserts the
# aggregate itself. Contacts queued at the upgrade already have their conversation-days; their
# kept strength is marked as of an old day, so the next read or beat recomputes it.
from django.db import migrations, models


def queued_strengths_stale(apps, schema_editor):
    RankPending = apps.get_model("streams", "RankPending")
    ContactStrength = apps.get_model("streams", "ContactStrength")
    ContactStrength.objects.filter(contact_id__in=RankPending.objects.values("contact_id")).update(
        computed_on="2000-01-01")


class Migration(migrations.Migration):
    dependencies = [("streams", "0019_feed_token_labels")]

    operations = [
        migrations.RunPython(queued_strengths_stale, migrations.RunPython.noop),
        migrations.DeleteModel(name="RankPending"),
        migrations.CreateModel(
            name="RankTouch",
            fields=[
                ("pk", models.CompositePrimaryKey("workspace_id", "activity_id", "contact_id", blank=True,
                                                  editable=False, primary_key=True, serialize=False)),
                ("workspace_id", models.BigIntegerField()),
                ("activity_id", models.BigIntegerField()),
                ("contact_id", models.BigIntegerField()),
            ],
        ),
    ]
