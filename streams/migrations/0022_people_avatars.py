from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("streams", "0021_devices_sync")]
    operations = [
        migrations.AddField(
            model_name="identity",
            name="avatar_url",
            field=models.CharField(blank=True, default="", max_length=500),
        ),
    ]
