"""The peer: django-activity-stream 2 (the PyPI package) in the same PostgreSQL, loaded with
the same workload as ``Action`` rows (actor = the Mesh contact), read the way its docs say:
``actor_stream(contact)[:50]`` and, for a deep page, the OFFSET slice it only has.

Runs in its own process (``mesh_bench`` starts ``mesh_bench_peer`` with MESH_BENCH_PEER=1,
which adds ``actstream`` to INSTALLED_APPS), so Mesh itself never depends on it."""

from __future__ import annotations

import datetime as dt
import sys
import time

from django.contrib.contenttypes.models import ContentType
from django.core.management import call_command
from django.db import connection

from .run import WORKSPACE, pct, timed_ms
from .workload import Workload, contact_email, contact_phone, contact_x


def run_peer(*, activities: int, contacts: int, devices: int, seed: int, samples: int, keep: bool, log=sys.stderr) -> dict:
    from actstream import registry
    from actstream.models import Action, actor_stream

    from streams.models import Contact, Identity, Workspace

    call_command("migrate", "actstream", verbosity=0)
    registry.register(Contact)
    ws = Workspace.objects.get(slug=WORKSPACE)
    ct = ContentType.objects.get_for_model(Contact)
    workload = Workload(activities=activities, contacts=contacts, devices=devices, seed=seed)

    # workload contact number → Mesh contact id (through the same identities Mesh resolved)
    ids: dict[tuple[str, str], int] = {
        (k, v): c for k, v, c in Identity.objects.filter(workspace=ws).values_list("kind", "value", "contact_id") if c
    }

    def contact_of(payload) -> int | None:
        n = payload["c"]
        key = {"email": ("email", contact_email(n)), "twitter": ("x", contact_x(n))}.get(payload["ch"], ("phone", contact_phone(n)))
        return ids.get(key)

    loaded = Action.objects.filter(actor_content_type=ct).count()
    if not (keep and loaded >= activities):
        if connection.vendor == "postgresql" and not connection.in_atomic_block:
            with connection.cursor() as cur:
                cur.execute(f"TRUNCATE {Action._meta.db_table}")
        else:
            Action.objects.all().delete()
        print(f"peer: loading {activities:,} actions ...", file=log, flush=True)
        t = time.perf_counter()
        batch = []
        for item in workload.items():
            p = item.payload
            cid = contact_of(p)
            if cid is None:
                continue
            batch.append(Action(
                actor_content_type=ct, actor_object_id=str(cid), verb=p["ch"], description=p["w"],
                timestamp=dt.datetime.fromisoformat(p["t"]), public=True,
            ))
            if len(batch) >= 5000:
                Action.objects.bulk_create(batch)
                batch = []
        Action.objects.bulk_create(batch)
        load_s = time.perf_counter() - t
        with connection.cursor() as cur:
            # Vacuumed as well as analyzed, as a table in service would be: a freshly loaded
            # table has no visibility map, and its OFFSET pages then fetch every heap row (the
            # peer's deep page measured 56 ms after VACUUM, 228 ms without).
            cur.execute("ANALYZE" if connection.in_atomic_block else f"VACUUM ANALYZE {Action._meta.db_table}")
    else:
        load_s = None

    from .run import Bench

    picks = Bench(activities=activities, contacts=contacts, devices=devices, seed=seed).contacts_to_read(ws, workload)
    result = {"load_s": round(load_s, 1) if load_s else None}
    for name, contact in picks.items():
        first = pct(timed_ms(lambda c=contact: list(actor_stream(c)[:50]), samples))
        offset = min(50 * 1000, max(contact.activity_count - 50, 0))
        deep = pct(timed_ms(lambda c=contact, o=offset: list(actor_stream(c)[o : o + 50]), samples))
        result[name] = {"first": first, "deep": deep, "deep_offset": offset}
    result["first_p95_ms"] = result.get("hot", {}).get("first", {}).get("p95")
    result["deep_p95_ms"] = result.get("hot", {}).get("deep", {}).get("p95")
    result["middling_first_p95_ms"] = result.get("middling", {}).get("first", {}).get("p95")
    return result
