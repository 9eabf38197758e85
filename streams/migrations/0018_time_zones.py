"""Time zones (issue 18 §1): a workspace's zone and each person's own (streams.timezones).
Display only: times stay stored in UTC."""

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0017_merge_suggestions"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name="workspace",
            name="time_zone",
            field=models.CharField(blank=True, default="", max_length=64),
        ),
        migrations.CreateModel(
            name="UserPreference",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("time_zone", models.CharField(blank=True, default="", max_length=64)),
                ("user", models.OneToOneField(on_delete=models.deletion.CASCADE, related_name="mesh_preference",
                                              to=settings.AUTH_USER_MODEL)),
            ],
        ),
    ]
