"""Placeholder in the migration chain, owned by the WEBPAGES work; filled in with its operations."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("streams", "0018_time_zones")]

    operations = []
