"""Placeholder (filled or removed before the session ends)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("streams", "0025_contact_page")]
    operations = []
