"""Placeholder in the migration chain, owned by the PLACES work; filled in with its operations."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("streams", "0014_device_sequence")]

    operations = []
