"""Relationship strength (streams.ranking): each factor alone on a hand-built timeline with its
answer worked out from the documented formula, all of them together, and the aggregate ingest
keeps incrementally (ingest queues what counts, folds sum it) equal to a rebuild
from the timelines after ingest, merge, unmerge, erasure and reprocessing, whenever the queue is
folded."""

from __future__ import annotations

import datetime as dt
import math

import pytest
from django.utils import timezone

from connectors.base import RawItem
from streams import timelines
from streams.feed_tokens import activity_erase
from streams.ingest import ingest_batch
from streams.models import Activity, Contact, ContactStrength, ConversationDay, RankBatch
from streams.ranking import (
    interaction_way,
    rank_pending_refresh,
    strength_factors,
    strength_parts,
    strength_score,
    strengths_current,
    strengths_refresh,
    workspace_rank_rebuild,
)
from streams.selectors.ranking import strength_explained
from streams.services import contact_merge, contact_unmerge
from tests.factories import ANA_NUMBER, DraftConnector, contact_for, ingest_events, make_event
from tests.fakes.cli import run_json

TODAY = dt.date(2026, 6, 1)
ANA = {"kind": "phone", "value": ANA_NUMBER, "display": "Ana"}
BEN = {"kind": "phone", "value": "+14155550101", "display": "Ben"}
ANA_MAIL = {"kind": "email", "value": "ana@example.com", "display": "Ana"}


class AutomatedDrafts(DraftConnector):
    """DraftConnector that also carries ``automated`` (newsletters)."""

    def normalize(self, raw):
        draft = super().normalize(raw)
        draft.automated = bool(raw.payload.get("automated"))
        return draft


def ingest(workspace, *items):
    """Items (external id, channel, ISO day and time, direction, person, extra fields) as one batch."""
    connector = AutomatedDrafts({}, {}, context={"region": workspace.region})
    raws = []
    for eid, channel, when, direction, person, *more in items:
        role = "from" if direction == "in" else "to"
        fields = {"channel": channel, "occurred_at": f"{when}+00:00", "direction": direction,
                  "verb": "receive" if direction == "in" else "send",
                  "participants": [{"role": role, **person}], **(more[0] if more else {})}
        raws.append(RawItem(eid, fields))
    return ingest_batch(workspace=workspace, connector=connector, items=raws)


def ago(days: int, time: str = "10:00:00") -> str:
    """A time ``days`` before today (UTC), as ``ingest`` takes it."""
    return f"{(timezone.now() - dt.timedelta(days=days)):%Y-%m-%d}T{time}"


def queued(contact_ids=None) -> int:
    """Interactions waiting in the queue (of these contacts)."""
    return sum(1 for batch in RankBatch.objects.all() for c in batch.contact_ids
               if contact_ids is None or c in contact_ids)


def parts_of(contact, today=TODAY):
    rank_pending_refresh(today=today)  # what the beat or a read does first
    return strength_parts(today=today, contact_ids=[contact.pk]).get(contact.pk)


def rank_state(workspace):
    days = sorted(ConversationDay.objects.filter(contact__workspace=workspace).values_list(
        "contact_id", "day", "channel", "conversation", "inbound", "outbound", "mutual", "first_at", "last_at"))
    fields = [f.attname for f in ContactStrength._meta.concrete_fields]
    strengths = sorted(ContactStrength.objects.filter(workspace=workspace).values_list(*fields))
    return days, strengths


def incremental_and_rebuilt(workspace):
    """The state the incremental paths leave once the queue is drained (as of the real today,
    as the merge and erasure hooks compute), then the state a rebuild gives."""
    strengths_current(workspace=workspace)
    incremental = rank_state(workspace)
    workspace_rank_rebuild(workspace=workspace)
    return incremental, rank_state(workspace)


# --- what counts --------------------------------------------------------------------------------


@pytest.mark.parametrize(("verb", "direction", "automated", "event_type", "way"), [
    ("receive", "in", False, "", "in"),
    ("send", "out", False, "", "out"),
    ("receive", "in", True, "", None),  # a newsletter
    ("battery", "none", False, "battery", None),
    ("location", "in", False, "location.update", None),
    ("presence", "none", False, "presence", None),
    ("draft", "out", False, "", None),
    ("meeting", "none", False, "meeting.attended", "both"),
    ("call", "in", False, "call.incoming", "both"),
    ("call", "out", False, "call.outgoing", "both"),
    ("call", "in", False, "call.missed", "in"),
    ("note", "none", False, "note", None),
])
def test_what_counts_and_which_way(verb, direction, automated, event_type, way):
    assert interaction_way(verb=verb, direction=direction, automated=automated, event_type=event_type) == way


def test_ingests_cached_rule_agrees_with_the_rule_and_keeps_no_long_event_type():
    """Ingest's step caches the rule per kind of activity; an event type from a source can be as
    long as its extra (256 KB), so a long one is answered without being kept."""
    from streams.ranking import _way_cached, _way_of

    _way_cached.cache_clear()
    long_missed = "call." + "x" * 100_000 + ".missed"
    assert _way_of("call", "in", False, long_missed) == "in"
    assert _way_of("call", "in", False, "call.incoming") == "both"
    assert _way_of("call", "in", False, "call.incoming") == "both"
    info = _way_cached.cache_info()
    assert (info.currsize, info.hits) == (1, 1)


def test_telemetry_and_automated_mail_count_for_nothing(workspace, device):
    ingest(workspace, ("m1", "email", "2026-05-01T09:00:00", "in", ANA_MAIL))
    ana = contact_for(workspace, "email", "ana@example.com")
    before = parts_of(ana)
    ingest(workspace, ("m2", "email", "2026-05-20T09:00:00", "in", ANA_MAIL, {"automated": True}))
    ingest_events(workspace, device, [
        make_event("b1", type="battery", occurred_at="2026-05-21T10:00:00Z", data={"battery": 40},
                   participants=[{"kind": "email", "value": "ana@example.com", "role": "to"}]),
        make_event("l1", type="location", occurred_at="2026-05-22T10:00:00Z", data={"lat": 1, "lon": 2},
                   participants=[{"kind": "email", "value": "ana@example.com", "role": "to"}]),
    ])
    ana.refresh_from_db()
    assert ana.activity_count == 4  # all on her timeline ...
    assert parts_of(ana) == before  # ... none of the last three counts
    assert before.conversations == 1 and before.last_touch_at == dt.datetime(2026, 5, 1, 9, tzinfo=dt.UTC)


# --- each factor alone ----------------------------------------------------------------------------


def test_frequency_counts_a_conversation_once_per_day_per_channel(workspace):
    chatty = [(f"s{i}", "sms", f"2026-05-30T1{i}:00:00", "in" if i % 2 else "out", ANA, {"thread_key": "t1"})
              for i in range(8)]
    ingest(workspace, *chatty, ("m1", "email", "2026-05-30T08:00:00", "in", ANA, {"thread_key": "mail-1"}),
           ("s9", "sms", "2026-05-30T20:00:00", "in", ANA, {"thread_key": "t2"}))
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    parts = parts_of(ana)
    assert (parts.conversations, parts.last_30) == (3, 3)  # thread t1 once, t2 once, the mail once
    row = ConversationDay.objects.get(contact=ana, channel="sms", conversation="t1")
    assert (row.inbound, row.outbound, row.mutual) == (4, 4, 0)
    assert strength_factors(parts, today=TODAY)["frequency"] == pytest.approx(1 - math.exp(-3 / 8))
    # The same thread the next day is another conversation-day.
    ingest(workspace, ("s10", "sms", "2026-05-31T09:00:00", "in", ANA, {"thread_key": "t1"}))
    assert parts_of(ana).last_30 == 4


def test_without_a_thread_the_channel_is_the_conversation(workspace):
    ingest(workspace, *[(f"s{i}", "sms", f"2026-05-30T1{i}:00:00", "in", ANA) for i in range(3)])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    rank_pending_refresh()
    assert list(ConversationDay.objects.filter(contact=ana).values_list("conversation", "inbound")) == [("", 3)]


def test_frequency_weighs_older_conversations_less(workspace):
    # 1 in the last 30 days, 2 more 30-90 days old, 4 more 90-365 days old: w = 1 + 2/2 + 4/4 = 3.
    days = ["2026-05-25", "2026-04-10", "2026-03-20", "2026-01-10", "2025-12-01", "2025-10-01", "2025-08-01"]
    ingest(workspace, *[(f"s{i}", "sms", f"{d}T10:00:00", "in", ANA) for i, d in enumerate(days)])
    parts = parts_of(contact_for(workspace, "phone", ANA_NUMBER))
    assert (parts.last_30, parts.last_90, parts.last_365) == (1, 3, 7)
    assert strength_factors(parts, today=TODAY)["frequency"] == pytest.approx(1 - math.exp(-3 / 8))


@pytest.mark.parametrize(("today", "recency"), [(dt.date(2026, 5, 1), 1.0), (dt.date(2026, 5, 31), 0.5),
                                                (dt.date(2026, 6, 30), 0.25)])
def test_recency_halves_every_30_quiet_days(workspace, today, recency):
    ingest(workspace, ("s1", "sms", "2026-05-01T10:00:00", "out", ANA))
    parts = parts_of(contact_for(workspace, "phone", ANA_NUMBER), today=today)
    assert strength_factors(parts, today=today)["recency"] == pytest.approx(recency)


@pytest.mark.parametrize(("directions", "reciprocity"), [
    (["in", "in", "in"], 0.0), (["out"], 0.0), (["in", "out"], 1.0), (["in", "in", "in", "out"], 1 / 3),
])
def test_reciprocity_is_the_smaller_direction_over_the_larger(workspace, directions, reciprocity):
    ingest(workspace, *[(f"s{i}", "sms", f"2026-05-{10 + i}T10:00:00", d, ANA) for i, d in enumerate(directions)])
    parts = parts_of(contact_for(workspace, "phone", ANA_NUMBER))
    assert strength_factors(parts, today=TODAY)["reciprocity"] == pytest.approx(reciprocity)


def test_a_call_or_meeting_counts_both_ways(workspace, device):
    ingest_events(workspace, device, [make_event("c1", type="call.incoming", occurred_at="2026-05-10T10:00:00Z",
                                                 participants=[{"kind": "phone", "value": ANA_NUMBER, "role": "from"}])])
    parts = parts_of(contact_for(workspace, "phone", ANA_NUMBER))
    assert (parts.in_365, parts.out_365) == (1, 1)
    assert strength_factors(parts, today=TODAY)["reciprocity"] == 1.0


@pytest.mark.parametrize(("channels", "breadth"), [(["sms"], 1 / 3), (["sms", "email"], 2 / 3),
                                                  (["sms", "email", "twitter", "device"], 1.0)])
def test_breadth_counts_channels_up_to_three(workspace, channels, breadth):
    ingest(workspace, *[(f"x{i}", ch, "2026-05-10T10:00:00", "in", ANA) for i, ch in enumerate(channels)])
    parts = parts_of(contact_for(workspace, "phone", ANA_NUMBER))
    assert strength_factors(parts, today=TODAY)["breadth"] == pytest.approx(breadth)


def test_tenure_grows_with_the_span_of_the_history_not_with_silence(workspace):
    ingest(workspace, ("s1", "sms", "2024-05-31T10:00:00", "in", ANA), ("s2", "sms", "2025-05-31T10:00:00", "out", ANA))
    parts = parts_of(contact_for(workspace, "phone", ANA_NUMBER))
    assert strength_factors(parts, today=TODAY)["tenure"] == pytest.approx(0.5)  # 365 days of history
    later = dt.date(2027, 6, 1)
    assert strength_factors(parts, today=later)["tenure"] == pytest.approx(0.5)  # a quiet year adds none


# --- together -------------------------------------------------------------------------------------


def test_the_score_of_a_hand_built_timeline(workspace, device):
    ingest(workspace,
           ("s1", "sms", "2026-05-31T09:00:00", "in", ANA, {"thread_key": "a"}),
           ("s2", "sms", "2026-05-31T09:05:00", "out", ANA, {"thread_key": "a"}),
           ("m1", "email", "2026-05-20T09:00:00", "in", ANA_MAIL))
    ingest_events(workspace, device, [make_event("c1", type="call.outgoing", occurred_at="2025-06-01T10:00:00Z",
                                                 participants=[{"kind": "phone", "value": ANA_NUMBER, "role": "to"}])])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    contact_merge(workspace=workspace, target=ana, other=contact_for(workspace, "email", "ana@example.com"))
    rank_pending_refresh(today=TODAY)
    strengths_refresh(workspace=workspace, today=TODAY)
    row = ContactStrength.objects.get(contact=ana)
    # By hand: 2 conversation-days in 30 days (the call is 365 days old: outside every window);
    # last touch 1 day ago; in 2, out 1; sms and email; 364 days from the first touch to the last.
    expected = 100 * (0.30 * (1 - math.exp(-2 / 8)) + 0.25 * 0.5 ** (1 / 30) + 0.15 * (1 / 2) + 0.15 * (2 / 3)
                      + 0.15 * (1 - 0.5 ** (364 / 365)))
    assert row.score == round(expected) == 56
    assert (row.tier, row.last_90, row.in_90, row.out_90, row.channels_90) == ("steady", 2, 2, 1, ["email", "sms"])
    assert row.first_touch_at == dt.datetime(2025, 6, 1, 10, tzinfo=dt.UTC)
    assert row.last_touch_at == dt.datetime(2026, 5, 31, 9, 5, tzinfo=dt.UTC)
    assert strength_explained(row) == "steady: 2 conversations in 90 days, both ways, on 2 channels"
    assert strength_score(parts_of(ana), today=TODAY) == row.score


def test_stronger_relationships_score_higher(workspace):
    ingest(workspace, *[(f"a{i}", ch, f"2026-05-{i + 1:02d}T10:00:00", "in" if i % 2 else "out", ANA)
                        for i, ch in enumerate(["sms", "email", "twitter"] * 6)])
    ingest(workspace, ("b1", "sms", "2026-02-01T10:00:00", "in", BEN))
    rank_pending_refresh(today=TODAY)
    ana, ben = contact_for(workspace, "phone", ANA_NUMBER), contact_for(workspace, "phone", BEN["value"])
    assert ana.strength.score > ben.strength.score
    assert (ana.strength.tier, ben.strength.tier) == ("strong", "faint")


# --- incremental == rebuild -----------------------------------------------------------------------


def _history(workspace, device):
    batches = [
        [("s1", "sms", ago(9), "in", ANA, {"thread_key": "t"}),
         ("s2", "sms", ago(9, "11:00:00"), "out", ANA, {"thread_key": "t"}),
         ("m1", "email", ago(8), "in", ANA_MAIL, {"thread_key": "<m1>"})],
        [("s3", "sms", ago(9, "23:59:59"), "in", ANA, {"thread_key": "t"}),  # s1's row, another batch
         ("s4", "sms", ago(7), "in", BEN),
         ("m2", "email", ago(6), "in", ANA_MAIL, {"automated": True})],
    ]
    for batch in batches:
        ingest(workspace, *batch)
    ingest_events(workspace, device, [
        make_event("c1", type="call.missed", occurred_at=ago(5) + "Z",
                   participants=[{"kind": "phone", "value": ANA_NUMBER, "role": "from"}]),
        make_event("k1", type="meeting.attended", occurred_at=ago(4) + "Z", data={"direction": "none"},
                   participants=[{"kind": "email", "value": "ana@example.com", "role": "to"},
                                 {"kind": "phone", "value": BEN["value"], "role": "to"}]),
    ])


def test_incremental_equals_rebuild_after_ingest(workspace, device, monkeypatch):
    import streams.ranking as ranking

    _history(workspace, device)
    # Ingest wrote only the interactions that count (not m2, automated), no aggregate.
    assert queued() == 8 and not ConversationDay.objects.exists()
    monkeypatch.setattr(ranking, "FOLD_CHUNK", 1)  # a batch a transaction: the same rows
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    assert len(incremental[0]) == 6 and len(incremental[1]) == 3
    assert not RankBatch.objects.exists()


def test_folds_onto_a_history_older_than_a_year_equal_the_rebuild(workspace):
    """A fold re-scores from the stored strength plus what it added and reads only the last
    year's conversation-days: the all-time parts (conversations, first and last touch) must come
    out as a rebuild from every row gives them, whether the new keys are new days, days already
    kept, or older than the year."""
    ingest(workspace, ("o1", "sms", ago(800), "in", ANA, {"thread_key": "t"}),
           ("o2", "email", ago(500), "out", ANA_MAIL), ("o3", "sms", ago(400), "in", BEN))
    strengths_current(workspace=workspace)
    assert ContactStrength.objects.count() == 3  # Ana's phone, Ana's address, Ben
    ingest(workspace, ("n1", "sms", ago(3), "out", ANA, {"thread_key": "t"}),
           ("n2", "sms", ago(800, "12:00:00"), "out", ANA, {"thread_key": "t"}),  # o1's day, kept
           ("n3", "email", ago(900), "in", ANA_MAIL), ("n4", "sms", ago(2), "in", BEN))
    strengths_current(workspace=workspace)
    ingest(workspace, ("n5", "email", ago(1), "in", ANA_MAIL))
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    phone = ContactStrength.objects.get(contact=contact_for(workspace, "phone", ANA_NUMBER))
    mail = ContactStrength.objects.get(contact=contact_for(workspace, "email", "ana@example.com"))
    assert (phone.conversations, phone.out_365, phone.in_365) == (2, 1, 0)
    assert mail.conversations == 3 and mail.first_touch_at.date() == timezone.now().date() - dt.timedelta(days=900)


def test_the_queues_microseconds_fold_into_utc_days_and_exact_times_before_and_after_the_epoch(workspace):
    """The queue holds times as microseconds since the epoch and the fold derives the day by
    integer division: a microsecond before midnight, midnight itself, and times before 1970
    (negative) land on the days and times a rebuild from the activities gives."""
    ingest(workspace, ("a", "sms", "1969-12-31T23:59:59.999999", "in", ANA, {"thread_key": "t"}),
           ("b", "sms", "1970-01-01T00:00:00", "out", ANA, {"thread_key": "t"}),
           ("c", "sms", "1969-07-20T20:17:40.000001", "in", ANA, {"thread_key": "t"}),
           ("d", "sms", "2026-05-30T23:59:59.999999", "in", ANA, {"thread_key": "t"}),
           ("e", "sms", "2026-05-31T00:00:00.000001", "out", ANA, {"thread_key": "t"}))
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    rows = list(ConversationDay.objects.order_by("day").values_list("day", "inbound", "outbound", "first_at"))
    utc = dt.UTC
    assert rows == [
        (dt.date(1969, 7, 20), 1, 0, dt.datetime(1969, 7, 20, 20, 17, 40, 1, tzinfo=utc)),
        (dt.date(1969, 12, 31), 1, 0, dt.datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=utc)),
        (dt.date(1970, 1, 1), 0, 1, dt.datetime(1970, 1, 1, tzinfo=utc)),
        (dt.date(2026, 5, 30), 1, 0, dt.datetime(2026, 5, 30, 23, 59, 59, 999999, tzinfo=utc)),
        (dt.date(2026, 5, 31), 0, 1, dt.datetime(2026, 5, 31, 0, 0, 0, 1, tzinfo=utc)),
    ]


def test_a_batch_committed_while_a_fold_runs_is_folded_by_the_next(workspace, device, monkeypatch):
    """The fold takes its batches off the queue in one statement; batches queued after it (here:
    a batch ingested while it re-scores) stay for the next fold (the beat's next minute, or a
    read), counted once."""
    import streams.ranking as ranking

    _history(workspace, device)
    rescore = ranking.strengths_refresh
    late = [("s5", "sms", ago(3), "out", BEN), ("s6", "sms", ago(9, "12:00:00"), "in", ANA, {"thread_key": "t"})]

    def rescore_while_a_batch_commits(**kwargs):
        if late:
            ingest(workspace, *late)
            late.clear()
            assert queued() == 2
        return rescore(**kwargs)

    monkeypatch.setattr(ranking, "strengths_refresh", rescore_while_a_batch_commits)
    assert rank_pending_refresh(workspace=workspace) == 3  # contacts re-scored
    assert not late and queued() == 2
    assert rank_pending_refresh(workspace=workspace) == 2
    assert not RankBatch.objects.exists()
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    assert ConversationDay.objects.get(contact=ana, conversation="t").inbound == 3  # s1, s3, s6


@pytest.mark.django_db(transaction=True)
def test_a_batch_committed_while_a_contact_is_recounted_is_counted_once(workspace, device, monkeypatch):
    """A recount (merge, erasure, reprocessing) drops the contact's queued interactions and reads its
    timeline in one statement: a batch that commits while the recount's transaction is still
    open (here: while it re-scores) is not in its rows and stays queued, so the next fold counts
    it, once."""
    import threading

    from django.db import connection

    import streams.ranking as ranking

    _history(workspace, device)
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    rescore = ranking.strengths_refresh
    recounted, committed = threading.Event(), threading.Event()
    errors: list[BaseException] = []

    def batch():
        try:
            assert recounted.wait(30)
            ingest(workspace, ("s8", "sms", ago(9, "13:00:00"), "in", ANA, {"thread_key": "t"}))
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            committed.set()
            connection.close()

    def rescore_while_a_batch_commits(**kwargs):
        recounted.set()
        assert committed.wait(30)
        return rescore(**kwargs)

    rank_pending_refresh()
    monkeypatch.setattr(ranking, "strengths_refresh", rescore_while_a_batch_commits)
    thread = threading.Thread(target=batch)
    thread.start()
    ranking.contact_rank_rebuild(contact_ids=[ana.pk])
    thread.join()
    assert not errors, errors
    row = ConversationDay.objects.get(contact=ana, conversation="t")
    assert (row.inbound, row.outbound) == (2, 1)  # s1, s3 and s2: the recount's
    assert queued([ana.pk]) == 1  # s8's, left queued
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    row = ConversationDay.objects.get(contact=ana, conversation="t")
    assert (row.inbound, row.outbound) == (3, 1)


def test_incremental_equals_rebuild_after_merge_and_unmerge(workspace, device):
    _history(workspace, device)
    phone, mail = contact_for(workspace, "phone", ANA_NUMBER), contact_for(workspace, "email", "ana@example.com")
    waiting = queued([phone.pk, mail.pk])
    assert queued([mail.pk])  # merged before the queue is folded
    contact_merge(workspace=workspace, target=phone, other=mail)
    # No activity on both timelines: the merge moved the merged contact's queued interactions.
    assert not queued([mail.pk]) and queued([phone.pk]) == waiting
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    assert not ConversationDay.objects.filter(contact=mail).exists()
    assert ContactStrength.objects.get(contact=phone).channels_90 == ["device", "email", "sms"]
    ingest(workspace, ("m3", "email", ago(3), "out", ANA_MAIL))  # lands on the survivor
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    contact_unmerge(workspace=workspace, contact=phone)
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    assert ContactStrength.objects.get(contact=mail).channels_90 == ["device", "email"]


# --- a merge moves the merged contact's rows (streams.ranking.contact_rank_merge) -------------------
# or, when a counted activity is on both timelines, recounts them; a rebuild gives the same either way.


@pytest.fixture
def recounts(monkeypatch):
    """The contact lists recounted from their timelines (``contact_rank_rebuild``) meanwhile."""
    calls = []
    recount = timelines.contact_rank_rebuild

    def spy(*, contact_ids, **kwargs):
        calls.append(sorted(contact_ids))
        recount(contact_ids=contact_ids, **kwargs)

    monkeypatch.setattr(timelines, "contact_rank_rebuild", spy)
    return calls


def to_both(workspace, eid, when, *, automated=False):
    """A mail from Ana's phone identity and her address at once (one activity, both timelines)."""
    fields = {"channel": "email", "occurred_at": f"{when}+00:00", "direction": "in", "verb": "receive",
              "automated": automated, "participants": [{"role": "from", **ANA}, {"role": "to", **ANA_MAIL}]}
    connector = AutomatedDrafts({}, {}, context={"region": workspace.region})
    ingest_batch(workspace=workspace, connector=connector, items=[RawItem(eid, fields)])


def ana_twice(workspace):
    phone, mail = contact_for(workspace, "phone", ANA_NUMBER), contact_for(workspace, "email", "ana@example.com")
    assert phone.pk != mail.pk
    return phone, mail


def test_conversation_days_of_both_on_the_same_key_are_added(workspace, recounts):
    # Same day, channel and conversation (no thread) on both contacts: the survivor's row is the sum.
    ingest(workspace, ("p1", "email", ago(3, "08:00:00"), "in", ANA), ("p2", "email", ago(40), "out", ANA),
           ("m1", "email", ago(3, "07:00:00"), "out", ANA_MAIL), ("m2", "email", ago(3, "21:00:00"), "in", ANA_MAIL),
           ("m3", "sms", ago(200), "in", ANA_MAIL))
    rank_pending_refresh()  # both contacts' rows stored, nothing queued
    phone, mail = ana_twice(workspace)
    contact_merge(workspace=workspace, target=phone, other=mail)
    assert recounts == []  # moved, not recounted
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    day = ConversationDay.objects.get(contact=phone, channel="email", day__gte=ago(3)[:10])
    assert (day.inbound, day.outbound) == (2, 1)
    assert day.first_at.strftime("%H") == "07" and day.last_at.strftime("%H") == "21"
    assert not ConversationDay.objects.filter(contact=mail).exists()
    assert not ContactStrength.objects.filter(contact=mail).exists()


def test_a_counted_activity_on_both_timelines_is_recounted_once(workspace, recounts):
    ingest(workspace, ("p1", "email", ago(5), "in", ANA), ("m1", "sms", ago(6), "in", ANA_MAIL))
    to_both(workspace, "both-1", ago(4))
    rank_pending_refresh()
    phone, mail = ana_twice(workspace)
    contact_merge(workspace=workspace, target=phone, other=mail)
    assert recounts == [sorted([phone.pk, mail.pk])]  # the sum would count it twice
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    assert ContactStrength.objects.get(contact=phone).conversations == 3


def test_an_activity_on_both_timelines_that_does_not_count_is_moved(workspace, recounts):
    ingest(workspace, ("p1", "email", ago(5), "in", ANA), ("m1", "email", ago(5), "out", ANA_MAIL))
    to_both(workspace, "newsletter", ago(4), automated=True)
    phone, mail = ana_twice(workspace)  # still queued: the merge moves the queue's elements too
    contact_merge(workspace=workspace, target=phone, other=mail)
    assert recounts == []
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    assert ConversationDay.objects.get(contact=phone).inbound == 1


def test_incremental_equals_rebuild_after_erasure(workspace, device):
    _history(workspace, device)
    ben = contact_for(workspace, "phone", BEN["value"])
    rank_pending_refresh()
    assert ContactStrength.objects.get(contact=ben).conversations == 2
    activity_erase(activity=Activity.objects.get(dedup_key="sms:s4"))
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    assert ContactStrength.objects.get(contact=ben).conversations == 1  # the meeting is left
    # Erased while its pair is still queued: the erasure's recount of Ben drops it.
    ingest(workspace, ("s7", "sms", ago(2), "in", BEN))
    assert queued([ben.pk])
    activity_erase(activity=Activity.objects.get(dedup_key="sms:s7"))
    assert not queued([ben.pk])
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    assert ContactStrength.objects.get(contact=ben).conversations == 1


def test_a_contact_left_with_nothing_that_counts_has_no_strength(workspace):
    ingest(workspace, ("s1", "sms", "2026-05-01T10:00:00", "in", BEN))
    rank_pending_refresh(today=TODAY)
    ben = contact_for(workspace, "phone", BEN["value"])
    assert ContactStrength.objects.filter(contact=ben).exists()
    activity_erase(activity=Activity.objects.get(dedup_key="sms:s1"))
    assert not ContactStrength.objects.filter(contact=ben).exists()
    assert not ConversationDay.objects.filter(contact=ben).exists()


# --- the command line and the pages ----------------------------------------------------------------


def test_mesh_rank_rebuild_gives_what_ingest_kept(workspace, device):
    _history(workspace, device)
    out = run_json("mesh_rank", "--workspace", "acme")
    before = rank_state(workspace)
    rebuilt = run_json("mesh_rank", "--rebuild", "--workspace", "acme")
    assert rank_state(workspace) == before
    assert (out["contacts_scored"], out["conversation_days"], rebuilt["rebuilt"]) == (3, 6, True)


def test_contact_json_carries_strength_and_last_touch_and_sorts_by_it(workspace):
    ingest(workspace, ("b1", "sms", ago(200), "in", BEN),
           *[(f"a{i}", "sms", ago(i + 1), "in" if i % 2 else "out", ANA) for i in range(6)])
    ingest(workspace, ("c1", "sms", ago(40), "in", {"kind": "phone", "value": "+14155550102"}))
    rows = run_json("mesh_contacts", "list", "--workspace", "acme", "--sort", "strength")
    strengths = [r["strength"] for r in rows]
    assert strengths == sorted(strengths, reverse=True) and strengths[0] > strengths[-1] > 0
    ana = next(r for r in rows if "phone:" + ANA_NUMBER in r["identities"])
    assert rows[0] == ana and ana["last_touch_at"].endswith("Z")
    assert {"strength", "last_touch_at"} <= set(run_json("mesh_contacts", "list", "--workspace", "acme")[0])


def test_the_contact_page_explains_the_score_and_the_list_sorts_by_it(workspace, member_client):
    ingest(workspace, ("b1", "sms", ago(200), "in", BEN),
           *[(f"a{i}", "sms", ago(i + 1), "in" if i % 2 else "out", ANA) for i in range(6)])
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    rank_pending_refresh(workspace=workspace)  # the beat, within a minute: the page reads no queue
    page = member_client.get(f"/contacts/{ana.pk}/").content.decode()
    assert "6 conversations in 90 days, both ways, on 1 channel" in page
    assert "recency" in page and "Keep in touch" in page
    listing = member_client.get("/contacts/?sort=strength").content.decode()
    ben = Contact.objects.get(identities__value=BEN["value"])
    assert listing.index(f"/contacts/{ana.pk}/") < listing.index(f"/contacts/{ben.pk}/")
    assert member_client.get("/contacts/?sort=strength&before=garbage").status_code == 400


def test_the_contact_page_reads_a_kept_score_without_aggregating_the_conversation_days(
        workspace, member_client, monkeypatch):
    # For a contact of 100,000 items the aggregate costs ~80 ms: once the beat has kept a
    # score, the page reads that row with the contact.
    from streams.views import ranking as ranking_views

    ingest(workspace, *[(f"a{i}", "sms", ago(i + 1), "in" if i % 2 else "out", ANA) for i in range(6)])
    rank_pending_refresh(workspace=workspace)
    ana = contact_for(workspace, "phone", ANA_NUMBER)
    monkeypatch.setattr(ranking_views, "strength_parts", lambda **kw: pytest.fail("aggregated on a page read"))
    page = member_client.get(f"/contacts/{ana.pk}/").content.decode()
    assert "6 conversations in 90 days, both ways, on 1 channel" in page


def test_incremental_equals_rebuild_after_reprocess(workspace, device, tmp_path, monkeypatch):
    """A parser change that moves a call to another person (timelines rebuilt) and turns a text
    around (rows stay, their direction changes): both paths end in the contacts' re-count."""
    import json

    from connectors.device.connector import DeviceConnector
    from streams.services import source_create, source_sync

    path = tmp_path / "e.jsonl"
    path.write_text("\n".join(json.dumps(e) for e in [
        make_event("1", type="call.incoming", occurred_at=ago(3) + "Z",
                   participants=[{"kind": "phone", "value": ANA_NUMBER, "role": "from"}]),
        make_event("2", type="sms.received", occurred_at=ago(2) + "Z",
                   participants=[{"kind": "phone", "value": BEN["value"], "role": "from"}]),
    ]) + "\n")
    source = source_create(workspace=workspace, connector="device", name="s", config={"path": str(path),
                                                                                       "device": device.pk})
    source_sync(source=source)
    original = DeviceConnector.normalize

    def changed(self, raw):
        draft = original(self, raw)
        if draft.verb == "call":
            draft.participants[0].value = "+14155550102"
        else:
            draft.direction = "out"
        return draft

    monkeypatch.setattr(DeviceConnector, "normalize", changed)
    assert run_json("mesh_reprocess", "--source", str(source.pk), "--workspace", "acme")["changed"] == 2
    incremental, rebuilt = incremental_and_rebuilt(workspace)
    assert incremental == rebuilt
    ana, ben = contact_for(workspace, "phone", ANA_NUMBER), contact_for(workspace, "phone", BEN["value"])
    assert not ContactStrength.objects.filter(contact=ana).exists()
    assert ConversationDay.objects.get(contact=ben).outbound == 1


def test_mesh_bench_rank_runs_and_its_rebuild_matches(db):
    """The benchmark as a smoke test (no timing asserted): it must keep running on the current
    code and report each figure."""
    import io
    import json

    from django.core.management import call_command

    out = io.StringIO()
    call_command("mesh_bench_rank", "--activities", "2000", "--contacts", "200", "--samples", "2",
                 "--drain-every", "1", "--json", stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert result["rebuild"]["equal_to_incremental"] is True and result["rebuild"]["conversation_days"] > 0
    assert result["ingest"]["plain_per_s"] > 0 and result["ingest"]["rescoring_s"] >= 0
    assert {"list_by_strength", "going_cold_page", "going_cold_feed_json"} <= set(result["reads"])
    assert result["reads"]["process"] == "this"  # the test's transaction hides its rows from a child
    assert [r["folds"] for r in result["ingest"]["rounds"]] == [3]  # after each of 2 batches, then the last


def test_mesh_bench_rank_folds_on_the_beats_minute_by_default(db):
    """Without --drain-every the queue is folded as the beat folds it, once a minute of the run:
    a load of seconds is folded once, at its end; --ranked-only skips the load without ranking."""
    import io
    import json

    from django.core.management import call_command

    out = io.StringIO()
    call_command("mesh_bench_rank", "--activities", "1000", "--contacts", "100", "--samples", "1",
                 "--ranked-only", "--json", stdout=out, stderr=io.StringIO())
    result = json.loads(out.getvalue())
    assert result["fold_every_s"] == 60.0 and result["drain_every_batches"] is None
    assert [r["folds"] for r in result["ingest"]["rounds"]] == [1]
    assert "plain_per_s" not in result["ingest"] and result["ingest"]["within_run_pct"] > 0


def test_mesh_bench_rank_times_the_reads_in_a_fresh_process(transactional_db):
    """Outside a transaction the reads are timed by a new process (as a web server's worker),
    which must find the workspace this one loaded in the same (test) database."""
    import io
    import json

    from django.core.management import call_command

    out = io.StringIO()
    call_command("mesh_bench_rank", "--activities", "500", "--contacts", "50", "--samples", "1", "--ranked-only",
                 "--drain-every", "1", "--keep", "--json", stdout=out, stderr=io.StringIO())
    reads = json.loads(out.getvalue())["reads"]
    assert reads["process"] == "fresh"
    assert reads["contacts"] == Contact.objects.filter(workspace__slug="bench-rank").count() > 0
    pages = ("list_by_strength", "list_by_strength_5000_deep", "list_by_recency", "going_cold_page",
             "going_cold_feed_json", "going_cold_query")
    assert all(reads[page]["p95"] > 0 and reads[page]["cpu_ms_mean"] >= 0 for page in pages)
