"""Mail without a Message-ID is keyed ``email:content:<hash>`` (addressing headers and a digest
of the body) instead of ``email:hash:<hash>`` (headers only, under which two script-sent
messages with the same headers were one). Stored ones are re-keyed from their raw message, so
reading the same mailbox again finds them rather than importing each a second time.

Their export id and feed GUID change once, here; an activity whose raw message is missing or
no longer parses keeps its old key (a later import of that message may then store it again).
"""

from django.db import migrations

LEGACY_PREFIX = "email:hash:"
CHUNK = 500


def email_keys_rekey(Activity) -> int:
    """Re-key the stored header-only keys; returns how many changed. Safe to run again."""
    from connectors.base import RawItem, registry

    # The mail connectors' own normalizer (mbox and imap share it), reached through the registry
    # as the core reaches any connector; no configuration, so no address counts as the owner's.
    mail = registry.get("mbox")()

    changed = 0
    last_pk = 0
    while True:
        chunk = list(
            Activity.objects.filter(pk__gt=last_pk, channel="email", dedup_key__startswith=LEGACY_PREFIX,
                                    raw__isnull=False)
            .order_by("pk")
            .only("pk", "workspace_id", "dedup_key", "thread_key", "raw")[:CHUNK]
        )
        if not chunk:
            return changed
        last_pk = chunk[-1].pk
        for activity in chunk:
            try:
                key = mail.normalize(RawItem(activity.dedup_key, activity.raw)).dedup_key
            except Exception:  # a payload this parser cannot read keeps the key it has
                continue
            if key == activity.dedup_key or Activity.objects.filter(
                workspace_id=activity.workspace_id, dedup_key=key
            ).exists():
                continue
            updates = {"dedup_key": key}
            if activity.thread_key == activity.dedup_key:  # a thread of one is keyed by its message
                updates["thread_key"] = key
            Activity.objects.filter(pk=activity.pk).update(**updates)
            changed += 1


def forwards(apps, schema_editor):
    email_keys_rekey(apps.get_model("streams", "Activity"))


class Migration(migrations.Migration):
    dependencies = [
        ("streams", "0011_source_sync_lease"),
    ]

    operations = [
        migrations.RunPython(forwards, migrations.RunPython.noop),
    ]
