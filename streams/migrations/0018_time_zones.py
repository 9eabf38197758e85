"""Placeholder in the migration chain, owned by the WEBTIME work; filled in with its operations."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("streams", "0017_merge_suggestions")]

    operations = []
