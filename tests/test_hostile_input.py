"""Hostile input through every parser and the one ingest path: NUL characters, lone surrogates,
control bytes, deep nesting, huge fields, wrong types and far-future times.

Whatever an item holds, its outcome is a stored activity whose text is clean, or a per-item
ImportFailure with a reason; never an exception out of ``ingest_batch`` (which would abort the
whole import, the same way on every re-run), a hang or unbounded memory.

The property tests seed from each connector's own fixtures and mutate them with hypothesis; each
example is ingested on the real database, so they are few per strategy.
"""

from __future__ import annotations

import datetime as dt
import json
import math
import re
from pathlib import Path

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import (
    MAX_CLOCK_SKEW,
    ActivityDraft,
    BadItem,
    Connector,
    ConnectorError,
    ParticipantDraft,
    RawItem,
)
from connectors.device.connector import DeviceConnector
from connectors.email_common import pack
from connectors.imap.connector import ImapConnector
from connectors.mbox.connector import MboxConnector
from connectors.sms_backup.connector import SmsBackupConnector
from connectors.text import MAX_JSON_DEPTH, ORJSON_MAX_DEPTH, clean_json, clean_text, needs_cleaning
from connectors.twilio_sms.connector import TwilioSmsConnector
from connectors.twitter.connector import TwitterConnector
from connectors.twitter_archive.connector import TwitterArchiveConnector
from streams import ingest as ingest_module
from streams.ingest import ingest_batch
from streams.models import Activity, ImportFailure, Participant, Source, SyncRun

FIXTURES = Path(__file__).parent / "fixtures"
OWNER = {"id": "4000000001", "username": "mesh_owner", "protected": False}
DIRTY = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def fixture(connector: str, name: str):
    return json.loads((FIXTURES / connector / name).read_text())


# -- a connector whose normalize hands back what the payload says, to reach the draft rules ------


class DraftConnector(Connector):
    """``payload["draft"]`` becomes the draft as it is: what a buggy or naive connector would
    hand to ingest."""

    key = "draft_echo"
    channel = "device"

    def normalize(self, raw: RawItem) -> ActivityDraft:
        fields = dict(raw.payload["draft"])
        fields["participants"] = [ParticipantDraft(**p) for p in fields.get("participants", [])]
        fields.setdefault("occurred_at", dt.datetime(2026, 5, 1, 9, tzinfo=dt.UTC))
        return ActivityDraft(channel="sms", verb="message", **fields)


def ingest_one(workspace, connector, raw, **kwargs):
    return ingest_batch(workspace=workspace, connector=connector, items=[raw], **kwargs)


def nested(depth: int, leaf=1):
    value = leaf
    for _ in range(depth):
        value = {"k": value}
    return value


# -- NUL characters and lone surrogates (15.2) --------------------------------------------------


def test_nul_and_lone_surrogates_in_every_draft_field_are_cleaned_and_the_item_stored(workspace):
    hostile = {
        "dedup_key": "sms:a\x00b", "subject": "sub\x00ject", "text": "half an emoji \ud83d, a NUL \x00.",
        "html": "<p>\x00</p>", "url": "https://example.com/\x00", "thread_key": "t\ud83d",
        "participants": [{"role": "from", "kind": "phone", "value": "+1415555\x000100", "display": "Ana\x00 \udc00Lima"}],
        "attachments": [{"name\x00": "a\ud83d.jpg"}], "extra": {"k\x00ey": ["v\x00", {"\ud83d": "\x07bell"}]},
    }
    result = ingest_one(workspace, DraftConnector(), RawItem("id\x00-1", {"draft": hostile, "note": "x\ud83d\x00"}))
    assert (result.new, result.failed) == (1, 0)
    a = Activity.objects.get(workspace=workspace)
    assert a.dedup_key == "sms:ab" and a.external_id == "id-1"
    assert (a.subject, a.text, a.html, a.url) == ("subject", "half an emoji \ufffd, a NUL .", "<p></p>", "https://example.com/")
    assert a.thread_key == "t\ufffd"
    assert a.attachments == [{"name": "a\ufffd.jpg"}]
    assert a.extra == {"key": ["v", {"\ufffd": "bell"}]}
    assert a.raw["note"] == "x\ufffd" and a.raw["draft"]["text"] == "half an emoji \ufffd, a NUL ."
    identity = Participant.objects.get(activity=a).identity
    assert (identity.value, identity.display) == ("+14155550100", "Ana \ufffdLima")


def test_the_same_dirty_item_imported_twice_is_stored_once(workspace):
    raw = RawItem("dup\x00", {"draft": {"dedup_key": "sms:\x00dup", "text": "\ud83d"}})
    assert ingest_one(workspace, DraftConnector(), raw).new == 1
    again = ingest_one(workspace, DraftConnector(), raw)
    assert (again.new, again.duplicate, again.failed) == (0, 1, 0)


def test_a_reimport_cleans_no_payload_of_items_already_stored(workspace, monkeypatch):
    # Cleaning costs an orjson encode per payload: a re-import of stored items (most of a
    # re-run) must not pay it, while what is stored stays clean.
    items = [RawItem(f"r{n}", {"draft": {"dedup_key": f"sms:r{n}"}, "note": "x\x00"}) for n in range(3)]
    ingest_batch(workspace=workspace, connector=DraftConnector(), items=items)
    assert {a.raw["note"] for a in Activity.objects.filter(workspace=workspace)} == {"x"}
    cleaned = []
    real_clean_json = ingest_module.clean_json
    monkeypatch.setattr(ingest_module, "clean_json", lambda value, **kw: cleaned.append(value) or real_clean_json(value, **kw))
    again = ingest_batch(workspace=workspace, connector=DraftConnector(), items=[*items, RawItem("new", {"draft": {"dedup_key": "sms:new"}})])
    assert (again.new, again.duplicate) == (1, 3)
    assert cleaned == [{"draft": {"dedup_key": "sms:new"}}]


def test_a_reimport_checks_and_cleans_no_draft_of_items_already_stored(workspace, monkeypatch):
    # Validation, the bound check and the cleaning cost per draft: a duplicate needs only its
    # (cleaned) key; a new item still gets all three, so a deep extra still fails.
    items = [RawItem(f"d{n}", {"draft": {"dedup_key": f"sms:d\x00{n}"}}) for n in range(3)]
    ingest_batch(workspace=workspace, connector=DraftConnector(), items=items)
    checked = []
    for name in ("validate", "check_bounds", "clean"):
        real = getattr(ActivityDraft, name)
        monkeypatch.setattr(ActivityDraft, name,
                            lambda self, real=real, name=name, **kw: checked.append((name, self.dedup_key)) or real(self, **kw))
    deep: dict = {}
    node = deep
    for _ in range(MAX_JSON_DEPTH + 5):
        node["x"] = {}
        node = node["x"]
    again = ingest_batch(workspace=workspace, connector=DraftConnector(), items=[
        *items, RawItem("new", {"draft": {"dedup_key": "sms:new"}}),
        RawItem("deep", {"draft": {"dedup_key": "sms:deep", "extra": deep}}),
    ])
    assert (again.new, again.duplicate, again.failed) == (1, 3, 1)
    assert checked == [("validate", "sms:new"), ("check_bounds", "sms:new"), ("clean", "sms:new"),
                       ("validate", "sms:deep"), ("check_bounds", "sms:deep")]
    assert "nested deeper" in ImportFailure.objects.get(external_id="deep").reason


def test_an_invalid_draft_gives_its_key_to_the_next_item_of_the_batch_with_that_key(workspace):
    # Validation runs after the batch is reduced to one item per key: the first with a key
    # must not shadow a valid repeat of it, which old rules stored.
    class Keyed(DraftConnector):
        def normalize(self, raw):
            when = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
            return ActivityDraft("sms", raw.payload["verb"], when, "sms:same", text=raw.external_id)

    result = ingest_batch(workspace=workspace, connector=Keyed(), items=[
        RawItem("bad", {"verb": ""}), RawItem("good", {"verb": "message"}), RawItem("again", {"verb": "message"}),
    ])
    assert (result.new, result.duplicate, result.failed) == (1, 1, 1)
    assert Activity.objects.get(workspace=workspace, dedup_key="sms:same").text == "good"
    assert "verb must be" in ImportFailure.objects.get(external_id="bad").reason


def test_one_dirty_id_or_key_among_clean_ones_is_cleaned_and_a_key_of_the_wrong_type_fails(workspace):
    # Ids and keys are checked for cleaning once per batch; a single dirty one among clean ones
    # (or an id that is not a string) still gets the per-item cleaning, stored or re-imported.
    items = [RawItem(f"c{n}", {"draft": {"dedup_key": f"sms:c{n}"}}) for n in range(5)]
    items += [RawItem("dirty\x00id", {"draft": {"dedup_key": "sms:clean-key"}}),
              RawItem("clean-id", {"draft": {"dedup_key": "sms:dirty\ud83d\x01key"}}),
              RawItem(42, {"draft": {"dedup_key": "sms:int-id"}}),
              RawItem("typed", {"draft": {"dedup_key": 7}})]
    result = ingest_batch(workspace=workspace, connector=DraftConnector(), items=items)
    assert (result.new, result.failed) == (8, 1)
    stored = dict(Activity.objects.filter(workspace=workspace).values_list("dedup_key", "external_id"))
    assert stored["sms:clean-key"] == "dirtyid" and stored["sms:int-id"] == "42"
    assert stored["sms:dirty\ufffdkey"] == "clean-id"
    assert "dedup_key must be" in ImportFailure.objects.get(external_id="typed").reason
    again = ingest_batch(workspace=workspace, connector=DraftConnector(), items=items)
    assert (again.new, again.duplicate, again.failed) == (0, 8, 1)


def test_dedup_key_of_only_control_characters_is_a_failure_not_an_empty_key(workspace):
    class Binary(DraftConnector):
        def normalize(self, raw):  # a key built from bytes the source sent, not from the payload
            return ActivityDraft("sms", "message", dt.datetime(2026, 5, 1, tzinfo=dt.UTC), "\x00\x01")

    result = ingest_one(workspace, Binary(), RawItem("e", {}))
    assert result.failed == 1
    assert "dedup_key is empty" in ImportFailure.objects.get(external_id="e").reason


def test_failure_with_nul_surrogates_and_nan_in_reason_and_payload_is_recorded_and_the_batch_goes_on(workspace):
    class Refusing(DraftConnector):
        def normalize(self, raw):
            if raw.payload.get("bad"):
                raise BadItem("cannot read \x00 \ud83d")
            return super().normalize(raw)

    items = [
        RawItem("bad\x00\ud83d", {"bad": True, "text\x00": "\ud83d\x00", "n": float("nan"), "big": 2**80}),
        RawItem("good", {"draft": {"dedup_key": "sms:good"}}),
    ]
    result = ingest_batch(workspace=workspace, connector=Refusing(), items=items)
    assert (result.new, result.failed) == (1, 1)
    failure = ImportFailure.objects.get(workspace=workspace)
    assert failure.external_id == "bad\ufffd"
    assert failure.reason == "cannot read  \ufffd"
    assert failure.payload == {"bad": True, "text": "\ufffd", "n": None, "big": 2**80}
    # Failing again bumps the same row, it does not break on it.
    ingest_batch(workspace=workspace, connector=Refusing(), items=items)
    assert ImportFailure.objects.get(workspace=workspace).attempts == 2


def test_a_connector_crash_quoting_nul_becomes_a_failure(workspace):
    class Crashing(DraftConnector):
        def normalize(self, raw):
            raise ValueError("bad byte \x00 in \ud800")

    result = ingest_one(workspace, Crashing(), RawItem("c", {"x": 1}))
    assert result.failed == 1
    assert ImportFailure.objects.get(external_id="c").reason == "ValueError: bad byte  in \ufffd"


def test_a_failure_quoting_a_whole_payload_keeps_a_readable_reason(workspace):
    class Quoting(DraftConnector):
        def normalize(self, raw):
            raise BadItem(f"cannot parse {raw.payload['blob']}")

    ingest_one(workspace, Quoting(), RawItem("q", {"blob": "x" * 50_000, "at": dt.datetime(2026, 5, 1, tzinfo=dt.UTC)}))
    failure = ImportFailure.objects.get(external_id="q")
    assert len(failure.reason) == 2000 and failure.reason.startswith("cannot parse xxx")
    assert failure.payload["at"] == "2026-05-01T00:00:00+00:00"


def test_a_draft_with_a_wrong_type_is_a_failure_naming_the_field(workspace):
    result = ingest_one(workspace, DraftConnector(), RawItem("t", {"draft": {"dedup_key": "sms:t", "text": None}}))
    assert result.failed == 1
    assert ImportFailure.objects.get(external_id="t").reason == "text must be a string, not NoneType"


def test_device_jsonl_with_nul_and_surrogates_imports_cleanly(workspace, device, tmp_path):
    lines = [
        r'{"id": "e\u00001", "type": "call.incoming", "occurred_at": "2026-05-01T10:00:00Z", '
        r'"data": {"summary": "call \ud83d", "k\u0000": "v"}, '
        r'"participants": [{"kind": "phone", "value": "+14155550100", "role": "from", "name": "An\u0000a"}]}',
        r'{"id": "e2", "type": "sms.sent", "occurred_at": "2026-05-01T10:01:00Z", "data": {"text": "\u0000"}}',
    ]
    path = tmp_path / "events.jsonl"
    path.write_text("\n".join(lines) + "\n")
    connector = DeviceConnector({"device": device.pk, "path": str(path)})
    [batch] = list(connector.fetch(None))
    result = ingest_batch(workspace=workspace, connector=connector, items=batch.items, device=device)
    assert (result.new, result.failed) == (2, 0)
    first = Activity.objects.get(external_id=f"{device.pk}/e1")
    assert first.extra["summary"] == "call \ufffd" and first.extra["k"] == "v"


def test_a_sync_error_quoting_nul_is_recorded_on_the_run_and_the_source(workspace, monkeypatch):
    from streams.services import source_sync

    source = Source.objects.create(workspace=workspace, name="phone", connector="device",
                                   config={"device": None, "path": "/nonexistent"})

    def failing_fetch(self, cursor, *, since=None):
        raise ConnectorError("server said \x00 \ud83d")

    monkeypatch.setattr(DeviceConnector, "fetch", failing_fetch)
    with pytest.raises(ConnectorError):
        source_sync(source=source)
    run = SyncRun.objects.get(source=source)
    source.refresh_from_db()
    assert run.error == source.last_error == "server said  \ufffd"


# -- far-future times (15.4) --------------------------------------------------------------------


def test_draft_dated_beyond_the_clock_skew_is_refused_with_its_date():
    now = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    draft = ActivityDraft("sms", "message", now + MAX_CLOCK_SKEW + dt.timedelta(seconds=1), "k")
    with pytest.raises(BadItem, match=r"occurred_at 2026-05-02T00:00:01\+00:00 is more than 1 day in the future"):
        draft.validate(now=now)
    ActivityDraft("sms", "message", now + MAX_CLOCK_SKEW, "k").validate(now=now)


def test_draft_dated_out_of_range_is_refused_not_crashed():
    draft = ActivityDraft("sms", "message", dt.datetime(1, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=5))), "k")
    with pytest.raises(BadItem, match="out of range"):
        draft.validate()


def test_device_api_refuses_times_by_the_same_skew_as_every_connector():
    from connectors.device.schema import parse_time

    now = dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    assert parse_time((now + MAX_CLOCK_SKEW).isoformat(), now=now) == now + MAX_CLOCK_SKEW
    with pytest.raises(ValueError, match="future"):
        parse_time((now + MAX_CLOCK_SKEW + dt.timedelta(seconds=1)).isoformat(), now=now)


def test_sms_backup_date_in_the_year_5138_is_a_failure_and_the_rest_imports(workspace, tmp_path):
    xml = (FIXTURES / "sms_backup" / "backup__mixed.xml").read_text()
    # Microseconds where milliseconds belong: 5138 years after 1970.
    path = tmp_path / "backup.xml"
    path.write_text(xml.replace('date="1777626000000"', 'date="99999999999999"', 1))
    connector = SmsBackupConnector({"path": str(path)}, {}, context={"region": "US"})
    items = [i for b in connector.fetch(None) for i in b.items]
    result = ingest_batch(workspace=workspace, connector=connector, items=items)
    assert result.failed == 2 and result.new == len(items) - 2  # the fixture's own bad element, and this one
    reason = ImportFailure.objects.get(workspace=workspace, reason__contains="future").reason
    assert reason.startswith("occurred_at 5138-11-16") and reason.endswith("is more than 1 day in the future")
    newest = Activity.objects.filter(workspace=workspace).order_by("-occurred_at").first()
    assert newest.occurred_at.year == 2026


def test_archive_tweet_dated_9999_is_a_failure(workspace):
    tweet = fixture("twitter_archive", "tweet__retweet.json")["tweet"]
    tweet["created_at"] = "Fri Dec 31 23:59:59 +0000 9999"
    result = ingest_one(workspace, TwitterArchiveConnector({}), RawItem(tweet["id_str"], {"tweet": tweet, "owner": OWNER}))
    assert result.failed == 1
    assert ImportFailure.objects.get(workspace=workspace).reason == (
        "occurred_at 9999-12-31T23:59:59+00:00 is more than 1 day in the future"
    )


def test_mail_dated_2100_takes_its_arrival_time_or_fails_when_it_has_none(workspace):
    data = (FIXTURES / "email" / "absurd_date__far_future.eml").read_bytes()
    mbox = MboxConnector({"path": "all.mbox"})
    arrived = ingest_one(workspace, mbox, RawItem("mail-1", pack(data, file="all.mbox", index=0)))
    assert arrived.new == 1
    stored = Activity.objects.get(workspace=workspace)
    assert (stored.occurred_at, stored.extra["date_source"]) == (dt.datetime(2026, 5, 10, 6, tzinfo=dt.UTC), "received")
    stored.delete()
    without_arrival = re.sub(rb"^Received: [^\n]*\n", b"", data, flags=re.M)
    assert without_arrival != data
    failed = ingest_one(workspace, mbox, RawItem("mail-2", pack(without_arrival, file="all.mbox", index=1)))
    assert failed.failed == 1
    assert ImportFailure.objects.get(external_id="mail-2").reason == (
        "occurred_at 2100-01-01T00:00:00+00:00 is more than 1 day in the future"
    )


# -- deep nesting and size (15.1, the draft rule) ------------------------------------------------


def test_extra_nested_deeper_than_the_limit_is_a_failure_naming_the_field(workspace):
    ok = {"draft": {"dedup_key": "sms:ok", "extra": nested(MAX_JSON_DEPTH)}}
    deep = {"draft": {"dedup_key": "sms:deep", "extra": nested(MAX_JSON_DEPTH + 1)}}
    result = ingest_batch(workspace=workspace, connector=DraftConnector(), items=[RawItem("ok", ok), RawItem("deep", deep)])
    assert (result.new, result.failed) == (1, 1)
    assert ImportFailure.objects.get(external_id="deep").reason == f"extra is nested deeper than {MAX_JSON_DEPTH} levels"


def test_extra_larger_than_the_size_cap_is_a_failure_naming_the_field(workspace):
    huge = {"draft": {"dedup_key": "sms:huge", "extra": {"blob": "x" * 300_000}}}
    assert ingest_one(workspace, DraftConnector(), RawItem("huge", huge)).failed == 1
    assert ImportFailure.objects.get(external_id="huge").reason == "extra is 292 KB serialized, more than 256 KB"


def test_payload_nested_too_deep_to_encode_is_a_failure_with_a_bounded_record(workspace):
    raw = RawItem("abyss", {"draft": {"dedup_key": "sms:abyss"}, "deep": nested(5000)})
    assert ingest_one(workspace, DraftConnector(), raw).failed == 1
    failure = ImportFailure.objects.get(external_id="abyss")
    assert failure.reason == "payload nested deeper than 254 levels"
    assert failure.payload["_error"] == failure.reason and len(failure.payload["repr"]) < 1000


# -- the shared cleaning ---------------------------------------------------------------------------

ANY_TEXT = st.text(st.characters(blacklist_categories=()), max_size=40)


@settings(max_examples=500, deadline=None)
@given(value=ANY_TEXT)
def test_needs_cleaning_says_exactly_whether_clean_text_changes_a_string(value):
    assert needs_cleaning(value) == (clean_text(value) != value)
    assert not needs_cleaning(clean_text(value))


@settings(max_examples=300, deadline=None)
@given(value=st.recursive(st.one_of(st.none(), st.integers(), st.floats(), ANY_TEXT),
                          lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                  st.dictionaries(ANY_TEXT, inner, max_size=4)),
                          max_leaves=20))
def test_clean_json_leaves_nothing_to_clean_and_returns_clean_values_as_they_are(value):
    def unstorable(v):
        """Strings (keys too) that need cleaning, and NaN or infinities."""
        if isinstance(v, str):
            return DIRTY.search(v) is not None
        if isinstance(v, float):
            return not math.isfinite(v)
        if isinstance(v, dict):
            return any(unstorable(k) or unstorable(item) for k, item in v.items())
        if isinstance(v, list):
            return any(unstorable(item) for item in v)
        return False

    cleaned = clean_json(value)
    assert not unstorable(cleaned)
    assert json.loads(json.dumps(cleaned, allow_nan=False)) == cleaned
    if not unstorable(value):
        assert cleaned is value


def test_orjson_encodes_exactly_as_deep_as_the_cleaning_assumes():
    # clean_json skips its depth walk for what orjson encodes; an orjson that went deeper
    # would let deeper payloads through unchecked.
    assert orjson.dumps(nested(ORJSON_MAX_DEPTH))
    with pytest.raises(TypeError):
        orjson.dumps(nested(ORJSON_MAX_DEPTH + 1))


# -- property tests over every parser ------------------------------------------------------------

HOSTILE_CHARS = st.sampled_from(["\x00", "\ud83d", "\udc00", "\x01", "\x08", "\x0b", "\x1b", "\x7f", "\ufffd", "é", "👍"])
HOSTILE_TEXT = st.lists(st.one_of(HOSTILE_CHARS, st.text(max_size=5)), max_size=8).map("".join)
WRONG_TYPES = st.sampled_from([None, 0, -1, 2**80, 1.5, float("nan"), float("inf"), True, [], {}, [1, "x"], {"a": None}])
FAR_TIMES = st.sampled_from([
    "9999-12-31T23:59:59Z", "Fri Dec 31 23:59:59 +0000 9999", "99999999999999", "253402300799000",
    "5138-11-16T09:46:40Z", "0001-01-01T00:00:00+05:00", "-1", "1e308",
])


def _paths(value, prefix=()):
    """Every place in a JSON value: (path, is_key)."""
    yield prefix, False
    if isinstance(value, dict):
        for k, v in value.items():
            yield (*prefix, k), True
            yield from _paths(v, (*prefix, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*prefix, i))


def _replace(value, path, new, *, key=False):
    if not path:
        return new
    head, *rest = path
    if isinstance(value, dict):
        out = dict(value)
        if key and not rest:
            out[new if isinstance(new, str) else str(new)] = out.pop(head)
        else:
            out[head] = _replace(value[head], rest, new, key=key)
        return out
    out = list(value)
    out[head] = _replace(value[head], rest, new, key=key)
    return out


def _get(value, path):
    for p in path:
        value = value[p]
    return value


@st.composite
def mutated(draw, payload):
    """``payload`` with one to three hostile changes anywhere in it, keys included."""
    places = list(_paths(payload))
    for _ in range(draw(st.integers(1, 3))):
        path, is_key = draw(st.sampled_from(places))
        current = _get(payload, path) if path or not is_key else None
        if is_key:
            new = draw(HOSTILE_TEXT)
        else:
            new = draw(st.one_of(
                HOSTILE_TEXT,
                HOSTILE_TEXT.map(lambda t, c=current: f"{c}{t}" if isinstance(c, str) else t),
                WRONG_TYPES,
                FAR_TIMES,
                st.integers(MAX_JSON_DEPTH, 300).map(nested),
                st.just("x" * 300_000),
            ))
        if not path:
            continue  # the payload itself stays an object: the reader decides that much
        payload = _replace(payload, path, new, key=is_key)
        places = list(_paths(payload))
    return payload


def assert_stored_clean_or_failed(workspace, connector, raw, **kwargs):
    Activity.objects.filter(workspace=workspace).delete()
    ImportFailure.objects.filter(workspace=workspace).delete()
    result = ingest_one(workspace, connector, raw, **kwargs)
    assert result.new + result.failed == 1, result
    if result.failed:
        assert ImportFailure.objects.get(workspace=workspace).reason
        return
    activity = Activity.objects.get(pk=result.activity_ids[0])
    for name in ("dedup_key", "external_id", "subject", "text", "html", "url", "thread_key"):
        assert not DIRTY.search(getattr(activity, name)), name
    for name in ("extra", "attachments", "raw"):
        assert clean_json(getattr(activity, name)) == getattr(activity, name), name
    assert activity.occurred_at <= dt.datetime.now(dt.UTC) + MAX_CLOCK_SKEW
    for identity in Participant.objects.filter(activity=activity).select_related("identity"):
        assert not needs_cleaning(identity.identity.value) and not needs_cleaning(identity.identity.display)


PROPERTY = settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                            HealthCheck.too_slow])

DEVICE_SEEDS = [fixture("device", name) for name in
                ("call__incoming.json", "location__owntracks_like.json", "notification__email.json", "sms__sent.json")]


@PROPERTY
@given(data=st.data())
def test_any_device_event_is_stored_clean_or_fails_alone(workspace, device, data):
    event = data.draw(st.sampled_from(DEVICE_SEEDS).flatmap(mutated))
    connector = DeviceConnector({"device": device.pk})
    assert_stored_clean_or_failed(workspace, connector, RawItem(f"{device.pk}/{event.get('id')}", event), device=device)


def _twitter_api_seeds():
    page = fixture("twitter", "users_tweets__page1.json")
    users = {u["id"]: u for u in page.get("includes", {}).get("users", [])}
    media = {m["media_key"]: m for m in page.get("includes", {}).get("media", [])}
    from connectors.twitter.connector import Owner

    owner = Owner(**OWNER)
    seeds = [TwitterConnector._tweet_item("posts", t, users, media, owner).payload for t in page["data"]]
    dms = fixture("twitter", "dm_events__page1.json")
    dm_users = {u["id"]: u for u in dms.get("includes", {}).get("users", [])}
    seeds += [TwitterConnector._dm_item(e, dm_users, {}, owner).payload for e in dms["data"][:2]]
    return seeds


@PROPERTY
@given(data=st.data())
def test_any_tweet_from_the_api_is_stored_clean_or_fails_alone(workspace, data):
    payload = data.draw(st.sampled_from(_twitter_api_seeds()).flatmap(mutated))
    connector = TwitterConnector({"user_id": OWNER["id"]}, {"bearer_token": "t"})
    assert_stored_clean_or_failed(workspace, connector, RawItem("tweet", payload))


def _archive_seeds():
    seeds = [{"tweet": fixture("twitter_archive", n)["tweet"], "owner": OWNER}
             for n in ("tweet__reply_with_photo.json", "tweet__retweet.json", "tweet__bad_created_at.json")]
    for name in ("dm__one_to_one.json", "dm__group.json"):
        conv = fixture("twitter_archive", name)["dmConversation"]
        event = next(m["messageCreate"] for m in conv["messages"] if "messageCreate" in m)
        seeds.append({"dm": event, "conversation": conv["conversationId"], "owner": OWNER})
    return seeds


@PROPERTY
@given(data=st.data())
def test_any_archived_tweet_or_dm_is_stored_clean_or_fails_alone(workspace, data):
    payload = data.draw(st.sampled_from(_archive_seeds()).flatmap(mutated))
    assert_stored_clean_or_failed(workspace, TwitterArchiveConnector({}), RawItem("archived", payload))


def _sms_backup_seeds():
    connector = SmsBackupConnector({"path": str(FIXTURES / "sms_backup" / "backup__mixed.xml")}, {},
                                   context={"region": "US"})
    return [i.payload for b in connector.fetch(None) for i in b.items]


@PROPERTY
@given(data=st.data())
def test_any_sms_backup_element_is_stored_clean_or_fails_alone(workspace, data):
    payload = data.draw(st.sampled_from(_sms_backup_seeds()).flatmap(mutated))
    connector = SmsBackupConnector({"path": "backup.xml"}, {}, context={"region": "US"})
    assert_stored_clean_or_failed(workspace, connector, RawItem("element", payload))


@pytest.mark.parametrize("reason", ["", "   ", None, "\x00"])
def test_sms_backup_element_with_a_blank_parser_error_fails_with_a_reason(workspace, reason):
    """Found by the property below: an element whose parser error was blank (or only a control
    character) failed with no reason."""
    connector = SmsBackupConnector({"path": "backup.xml"}, {}, context={"region": "US"})
    assert_stored_clean_or_failed(workspace, connector, RawItem("element", {"_error": reason}))
    assert ImportFailure.objects.get(workspace=workspace).reason in ("unreadable element",
                                                                     "no reason given by the connector")


def _twilio_seeds():
    received = {"_received_at": "2026-05-01T10:00:00+00:00"}
    seeds = [{**fixture("twilio_sms", n), **received} for n in ("inbound__sms.json", "inbound__mms.json")]
    return seeds + fixture("twilio_sms", "messages__history.json")[:2]


@PROPERTY
@given(data=st.data())
def test_any_twilio_message_is_stored_clean_or_fails_alone(workspace, data):
    payload = data.draw(st.sampled_from(_twilio_seeds()).flatmap(mutated))
    connector = TwilioSmsConnector({"account_sid": "AC0123456789abcdef0123456789abcdef", "numbers": "+14155550199"},
                                   {"auth_token": "t"}, context={"region": "US"})
    assert_stored_clean_or_failed(workspace, connector, RawItem("SMhostile", payload))


EMAIL_SEEDS = [(FIXTURES / "email" / n).read_bytes() for n in
               ("reply_chain__1.eml", "encoded_words__several_charsets.eml", "alternative__inline_images.eml",
                "missing_date.eml", "absurd_date__far_future.eml")]
HOSTILE_BYTES = st.sampled_from([b"\x00", b"\xed\xa0\xbd", b"\xff\xfe", b"\x1b$B", b"\x01\x7f", b"=?utf-8?b?AA==?=",
                                 b"=?utf-8?q?=00=ED=A0=BD?=", b"&#0;", b"\r\n\r\n", b"Date: Fri, 31 Dec 9999 23:59:59 +0000\r\n",
                                 b"Content-Type: multipart/mixed; boundary=" + b"x" * 2000 + b"\r\n"])


@st.composite
def mutated_message(draw):
    data = draw(st.sampled_from(EMAIL_SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(data)))
        data = data[:at] + draw(HOSTILE_BYTES) + data[at:]
    return data


@PROPERTY
@given(data=mutated_message(), meta_date=st.sampled_from([None, "2026-05-10T06:00:00+00:00", "9999-12-31T00:00:00Z", "\x00"]))
def test_any_mail_from_imap_or_mbox_is_stored_clean_or_fails_alone(workspace, data, meta_date):
    imap = ImapConnector({"host": "mail.example", "username": "me@example.com"}, {"password": "x"})
    mbox = MboxConnector({"path": "all.mbox"})
    for connector, meta in ((imap, {"folder": "INBOX\x00", "uid": 7, "internaldate": meta_date}),
                            (mbox, {"file": "all.mbox", "index": 3, "mbox_date": meta_date})):
        assert_stored_clean_or_failed(workspace, connector, RawItem(f"{connector.key}:1", pack(data, **meta)))


@PROPERTY
@given(data=st.data())
def test_any_draft_a_connector_hands_over_is_stored_clean_or_fails_alone(workspace, data):
    seed = {"draft": {"dedup_key": "sms:1", "subject": "s", "text": "t", "url": "https://x", "thread_key": "th",
                      "participants": [{"role": "from", "kind": "phone", "value": "+14155550100", "display": "Ana"}],
                      "attachments": [{"name": "a.jpg"}], "extra": {"k": "v", "n": [1, 2]}}}
    payload = data.draw(mutated(seed))
    assert_stored_clean_or_failed(workspace, DraftConnector(), RawItem("draft", payload))

