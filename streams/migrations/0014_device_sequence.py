"""Placeholder in the migration chain, owned by the DEVICE work; filled in with its operations."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("streams", "0013_sync_change_log")]

    operations = []
