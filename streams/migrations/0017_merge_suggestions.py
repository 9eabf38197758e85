"""Merge suggestions and name sources (issue 17 §3, the LINK work): where a contact's name and an
identity's display came from, what a merge took from the survivor, the workspace's auto-merge
score (off), and the suggestions themselves."""

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("streams", "0016_relationship_strength")]

    operations = [
        migrations.AddField(
            model_name="contact",
            name="merge_undo",
            field=models.JSONField(blank=True, default=dict),
        ),
        migrations.AddField(
            model_name="contact",
            name="name_source",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddField(
            model_name="identity",
            name="display_source",
            field=models.CharField(blank=True, default="", max_length=16),
        ),
        migrations.AddField(
            model_name="workspace",
            name="auto_merge_score",
            field=models.FloatField(blank=True, null=True),
        ),
        migrations.CreateModel(
            name="MergeSuggestion",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("score", models.FloatField()),
                ("reasons", models.JSONField(blank=True, default=list)),
                ("strength", models.PositiveSmallIntegerField(default=0)),
                ("state", models.CharField(
                    choices=[("open", "Open"), ("accepted", "Accepted"), ("rejected", "Rejected")],
                    default="open", max_length=10)),
                ("auto", models.BooleanField(
                    default=False, help_text="Merged by the workspace's auto-merge score, not by a person.")),
                ("created_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("updated_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("decided_at", models.DateTimeField(blank=True, null=True)),
                ("contact_a", models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE, related_name="+", to="streams.contact")),
                ("contact_b", models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE, related_name="+", to="streams.contact")),
                ("workspace", models.ForeignKey(
                    on_delete=django.db.models.deletion.CASCADE, related_name="merge_suggestions",
                    to="streams.workspace")),
            ],
            options={
                "indexes": [models.Index(fields=["workspace", "state", "-score"], name="suggestion_open_idx")],
                "constraints": [models.UniqueConstraint(
                    fields=("workspace", "contact_a", "contact_b"), name="suggestion_pair_unique")],
            },
        ),
    ]
