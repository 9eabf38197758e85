"""Placeholder in the migration chain, owned by the RANK work; filled in with its operations."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("streams", "0015_places")]

    operations = []
