"""Placeholder in the migration chain, owned by the SYNC work; filled in with its operations."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("streams", "0012_email_content_dedup_keys")]

    operations = []
