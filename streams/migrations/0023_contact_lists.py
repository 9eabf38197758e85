"""Contact list and going-cold pages: the list's index read in the list's order (NULLS LAST,
merged_into IS NULL as its predicate), so a page reads 51 rows instead of sorting every contact;
strengths by (workspace, tier, last touch) for the going-cold page's candidates."""

from django.db import migrations, models


def create_list_index(apps, schema_editor):
    # SQLite refuses NULLS LAST in an index, and its DESC already sorts NULL last
    nulls = " NULLS LAST" if schema_editor.connection.vendor == "postgresql" else ""
    schema_editor.execute(
        'CREATE INDEX "contact_list_idx" ON "streams_contact" '
        f'("workspace_id", "is_self", "last_activity_at" DESC{nulls}, "id" DESC) WHERE "merged_into_id" IS NULL'
    )


def drop_list_index(apps, schema_editor):
    schema_editor.execute('DROP INDEX "contact_list_idx"')


class Migration(migrations.Migration):
    dependencies = [("streams", "0022_people_avatars")]
    operations = [
        migrations.RemoveIndex(model_name="contact", name="contact_list_idx"),
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(create_list_index, drop_list_index)],
            state_operations=[migrations.AddIndex(
                model_name="contact",
                index=models.Index(
                    models.F("workspace"), models.F("is_self"),
                    models.OrderBy(models.F("last_activity_at"), descending=True, nulls_last=True),
                    models.OrderBy(models.F("id"), descending=True), name="contact_list_idx",
                    condition=models.Q(merged_into=None),
                ),
            )],
        ),
        migrations.AddIndex(
            model_name="contactstrength",
            index=models.Index(fields=["workspace", "tier", "last_touch_at"], name="strength_cold_idx",
                               condition=models.Q(last_touch_at__isnull=False)),
        ),
    ]
