"""The sync log's identity update trigger (migration 0024: one statement-level trigger over the
transition tables, not a row trigger per identity): an ``UPDATE`` of many identities logs exactly
those whose contact, display or self flag changed, with every activity they take part in once,
and nothing for the rest (ingest refreshes ``display_seen_at`` of every identity it sees)."""

from __future__ import annotations

import pytest
from django.db import connection, transaction

from streams.models import Change, Identity, Participant
from tests.factories import ANA_NUMBER, ingest_events, make_device, make_event

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="PostgreSQL's trigger"),
]

BEN = "+14155550101"
CARL = "+14155550102"


def _people(workspace):
    phone, _ = make_device(workspace)
    people = [{"kind": "phone", "value": v, "role": "from", "name": n}
              for v, n in ((ANA_NUMBER, "Ana"), (BEN, "Ben"), (CARL, "Carl"))]
    ingest_events(workspace, phone, [
        make_event("a1", participants=[people[0]]),
        make_event("a2", participants=[people[0], people[1]]),  # Ana and Ben share one
        make_event("b1", participants=[people[1]]),
        make_event("c1", participants=[people[2]]),
    ])
    return {i.value: i for i in Identity.objects.filter(workspace=workspace, kind="phone")}


def _logged(since: int) -> set[tuple[str, int, str]]:
    return set(Change.objects.filter(id__gt=since).values_list("kind", "object_id", "op"))


def _activities_of(*identities) -> set[int]:
    return set(Participant.objects.filter(identity__in=identities).values_list("activity_id", flat=True))


def _last() -> int:
    return Change.objects.order_by("-id").values_list("id", flat=True).first() or 0


def test_one_update_of_many_identities_logs_only_the_changed_ones_and_their_activities(workspace):
    ids = _people(workspace)
    ana, ben, carl = ids[ANA_NUMBER], ids[BEN], ids[CARL]
    since = _last()
    with transaction.atomic(), connection.cursor() as cur:
        # Ana renamed, Ben and Carl only seen again: one statement, as ingest's display refresh.
        cur.execute(
            "UPDATE streams_identity SET display = CASE WHEN id = %s THEN 'Ana Smith' ELSE display END, "
            "display_seen_at = now() WHERE id = ANY(%s)", [ana.pk, [ana.pk, ben.pk, carl.pk]])
    logged = _logged(since)
    assert logged == {("i", ana.pk, "r")} | {("a", a, "u") for a in _activities_of(ana)}
    assert len(Change.objects.filter(id__gt=since, kind="a")) == len(_activities_of(ana))

    since = _last()
    Identity.objects.filter(pk__in=[ana.pk, ben.pk]).update(display_seen_at=None)  # no replica column
    assert _logged(since) == set()


def test_identities_moved_in_one_statement_log_each_shared_activity_once(workspace):
    ids = _people(workspace)
    ana, ben, carl = ids[ANA_NUMBER], ids[BEN], ids[CARL]
    since = _last()
    Identity.objects.filter(pk__in=[ana.pk, ben.pk]).update(contact=carl.contact)
    logged = Change.objects.filter(id__gt=since)
    assert set(logged.filter(kind="i").values_list("object_id", "op")) == {(ana.pk, "m"), (ben.pk, "m")}
    activity_ids = list(logged.filter(kind="a").values_list("object_id", flat=True))
    assert sorted(activity_ids) == sorted(_activities_of(ana, ben))  # the shared one once

    since = _last()
    Identity.objects.filter(pk=carl.pk).update(is_self=True)
    assert _logged(since) == {("i", carl.pk, "r")} | {("a", a, "u") for a in _activities_of(carl)}


def test_the_log_switch_silences_the_identity_trigger_too(workspace):
    ids = _people(workspace)
    since = _last()
    with transaction.atomic(), connection.cursor() as cur:
        cur.execute("SET LOCAL mesh.sync_log = 'off'")
        cur.execute("UPDATE streams_identity SET display = 'x' WHERE id = %s", [ids[BEN].pk])
    assert _logged(since) == set()
