"""WEBPAGES (issue 18 §6): a label per feed token, so that a person can tell which reader or tool
holds which token before revoking one."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("streams", "0018_time_zones")]

    operations = [
        migrations.AddField(
            model_name="feedtoken",
            name="label",
            field=models.CharField(blank=True, help_text="What the token is for, e.g. the reader using it.",
                                   max_length=100),
        ),
    ]
