"""Placeholder in the migration chain, owned by the LINK work; filled in with its operations."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("streams", "0016_relationship_strength")]

    operations = []
