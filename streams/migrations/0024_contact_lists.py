"""Contact list and going-cold pages: the list's index read in the list's order (NULLS LAST, merged_into
IS NULL as its predicate), so a page reads 51 rows instead of sorting every contact."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("streams", "0023_rank_fold")]
    operations = [
        migrations.RemoveIndex(model_name="contact", name="contact_list_idx"),
        migrations.AddIndex(
            model_name="contact",
            index=models.Index(
                models.F("workspace"), models.F("is_self"),
                models.OrderBy(models.F("last_activity_at"), descending=True, nulls_last=True),
                models.OrderBy(models.F("id"), descending=True), name="contact_list_idx",
                condition=models.Q(merged_into=None),
            ),
        ),
    ]
