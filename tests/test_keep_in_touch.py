"""Keep in touch: cadences (a contact's own, a tier's default), the last touch (any interaction
that counts, either way; not a newsletter), the going-cold list's order on the page, in
``mesh_contacts cold --json`` and in its JSON/RSS feed behind a revocable token."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

import pytest
from django.core.cache import cache
from django.utils import timezone

from connectors.base import RawItem
from streams.cold_feed import cold_feed_token_create
from streams.ingest import ingest_batch
from streams.models import ContactStrength, KeepInTouch
from streams.ranking import (
    RankError,
    contact_cadence_set,
    parse_days,
    strengths_current,
    tier_cadence_set,
)
from streams.selectors.ranking import going_cold, tier_cadences
from tests.factories import DraftConnector, contact_for
from tests.fakes.cli import RFC3339_Z, run, run_json


class AutomatedDrafts(DraftConnector):
    def normalize(self, raw):
        draft = super().normalize(raw)
        draft.automated = bool(raw.payload.get("automated"))
        return draft


def phone(n: int) -> str:
    return f"+1415555{n:04d}"


def touch(workspace, n: int, days_ago: float, *, direction="in", automated=False, key=""):
    """Person ``n`` texted (or was texted) ``days_ago`` days ago."""
    when = timezone.now() - dt.timedelta(days=days_ago)
    fields = {"channel": "sms", "occurred_at": when.isoformat(), "direction": direction, "automated": automated,
              "participants": [{"role": "from" if direction == "in" else "to", "kind": "phone", "value": phone(n),
                                "display": f"Person {n}"}]}
    connector = AutomatedDrafts({}, {}, context={"region": workspace.region})
    ingest_batch(workspace=workspace, connector=connector, items=[RawItem(key or f"{n}-{days_ago}-{direction}", fields)])
    return contact_for(workspace, "phone", phone(n))


@pytest.fixture
def people(workspace):
    """Three people with their own cadences: 1 is 6 days past a 14-day cadence, 2 is 23 days
    past a 7-day one (and past its 21-day maximum: cold), 3 is not due."""
    one, two, three = touch(workspace, 1, 20), touch(workspace, 2, 30), touch(workspace, 3, 5)
    contact_cadence_set(workspace=workspace, contact=one, every_days=14, at_most_days=42)
    contact_cadence_set(workspace=workspace, contact=two, every_days=7, at_most_days=21)
    contact_cadence_set(workspace=workspace, contact=three, every_days=30)
    return one, two, three


def test_going_cold_lists_who_is_past_their_cadence_most_urgent_first(workspace, people):
    one, two, three = people
    strengths_current(workspace=workspace)
    entries = going_cold(workspace=workspace, now=timezone.now())
    assert [e.contact_id for e in entries] == [two.pk, one.pk]
    assert [e.state for e in entries] == ["cold", "due"]
    assert entries[1].due_at == ContactStrength.objects.get(contact=one).last_touch_at + dt.timedelta(days=14)
    assert KeepInTouch.objects.get(contact=three).at_most_days == 90  # at most: 3 × the interval by default


def test_a_reply_resets_the_cadence_and_a_newsletter_does_not(workspace, people):
    one, two, _three = people
    touch(workspace, 2, 1, automated=True, key="newsletter")
    strengths_current(workspace=workspace)
    assert [e.contact_id for e in going_cold(workspace=workspace, now=timezone.now())] == [two.pk, one.pk]
    touch(workspace, 2, 1, direction="in", key="reply")
    strengths_current(workspace=workspace)
    assert [e.contact_id for e in going_cold(workspace=workspace, now=timezone.now())] == [one.pk]


def test_tier_defaults_apply_to_contacts_without_a_cadence_of_their_own(workspace):
    person = touch(workspace, 4, 100)
    strengths_current(workspace=workspace)
    tier = ContactStrength.objects.get(contact=person).tier
    assert going_cold(workspace=workspace, now=timezone.now()) == []  # weak and faint: no reminders by default
    tier_cadence_set(workspace=workspace, tier=tier, every_days=30, at_most_days=60)
    [entry] = going_cold(workspace=workspace, now=timezone.now())
    assert (entry.contact_id, entry.own_cadence, entry.every_days, entry.state) == (person.pk, False, 30, "cold")
    tier_cadence_set(workspace=workspace, tier=tier, every_days=None)
    assert going_cold(workspace=workspace, now=timezone.now()) == []


def test_cadences_refuse_what_makes_no_sense(workspace):
    person = touch(workspace, 5, 1)
    with pytest.raises(RankError):
        contact_cadence_set(workspace=workspace, contact=person, every_days=30, at_most_days=10)
    with pytest.raises(RankError):
        tier_cadence_set(workspace=workspace, tier="best-friends", every_days=7)
    with pytest.raises(RankError):
        parse_days("soon")
    assert [parse_days(t) for t in ("14", "14d", "2w", "3m")] == [14, 14, 14, 90]


def test_cli_cold_json_and_cadence(workspace, people):
    one, two, three = people
    rows = run_json("mesh_contacts", "cold", "--workspace", "acme")
    assert [r["id"] for r in rows] == [two.pk, one.pk]
    assert {"id", "name", "last_touch_at", "due_at", "strength"} <= set(rows[0])
    assert RFC3339_Z.match(rows[0]["last_touch_at"]) and RFC3339_Z.match(rows[0]["due_at"])
    assert rows[0]["name"] == "Person 2" and isinstance(rows[0]["strength"], int)
    out = run_json("mesh_contacts", "cadence", str(three.pk), "--every", "2d", "--at-most", "1w", "--workspace", "acme")
    assert out == {"id": three.pk, "every_days": 2, "at_most_days": 7, "own": True}
    assert [r["id"] for r in run_json("mesh_contacts", "cold", "--workspace", "acme")] == [two.pk, three.pk, one.pk]
    cleared = run_json("mesh_contacts", "cadence", str(three.pk), "--clear", "--workspace", "acme")
    assert cleared["own"] is False
    tier = run_json("mesh_contacts", "cadence", "--tier", "steady", "--every", "3w", "--workspace", "acme")
    assert tier == {"tier": "steady", "every_days": 21, "at_most_days": 63}
    status, _out, err = run("mesh_contacts", "cadence", str(one.pk), "--every", "soon", "--workspace", "acme")
    assert status == 1 and "not a number of days" in err
    assert run("mesh_contacts", "cadence", "--workspace", "acme")[0] == 2


def test_the_going_cold_page_and_the_cadence_form(workspace, people, member_client):
    one, two, three = people
    page = member_client.get("/cold/").content.decode()
    assert 'href="/cold/"' in page  # in the navigation
    assert page.index("Person 2") < page.index("Person 1") and "Person 3" not in page
    response = member_client.post(f"/contacts/{three.pk}/cadence/", {"every": "1d", "at_most": "2d"})
    assert response.status_code == 302
    assert KeepInTouch.objects.get(contact=three).every_days == 1
    assert "Person 3" in member_client.get("/cold/").content.decode()
    response = member_client.post(f"/contacts/{three.pk}/cadence/", {"every": "whenever"}, follow=True)
    assert response.status_code == 200 and "Cadence not saved" in response.content.decode()
    member_client.post(f"/contacts/{three.pk}/cadence/", {"action": "clear"})
    assert not KeepInTouch.objects.filter(contact=three).exists()


def test_a_cached_going_cold_row_is_never_stale(workspace, people, member_client):
    """The page's rows come from the fragment cache (views.ranking._cold_rows): whatever a row
    shows (name, cadence, state, the reader's zone) changes its key."""
    from streams.contacts import contact_rename

    one, two, _three = people

    def rows() -> str:
        page = member_client.get("/cold/").content.decode()
        return page[page.index('<ul class="contact-list cold-list">'):page.index("</ul>", page.index("cold-list"))]

    first = rows()
    assert first == rows()  # served again from the cache
    assert "Person 1</a>" in first and "every 14 d, at most 42 d</span>" in first
    assert 'class="card contact-row cold-due"' in first and 'class="card contact-row cold-cold"' in first
    contact_rename(workspace=workspace, contact=one, name="Ana Souza")
    contact_cadence_set(workspace=workspace, contact=one, every_days=10, at_most_days=15)
    second = rows()
    assert "Ana Souza</a>" in second and "Person 1</a>" not in second
    assert "every 10 d, at most 15 d</span>" in second and 'cold-due"' not in second  # past 15 days: cold
    utc = re.search(r'<time datetime="[^"]+" title="([^"]+)"', second).group(1)
    member_client.post("/settings/time-zone/", {"time_zone": "Asia/Tokyo"})
    assert re.search(r'<time datetime="[^"]+" title="([^"]+)"', rows()).group(1) != utc


def test_the_going_cold_feed_behind_a_revocable_token(workspace, people, client, member_client):
    one, two, _three = people
    created = run_json("mesh_rank", "--feed-token", "create", "--workspace", "acme")
    json_path = created["urls"]["json"].split("://", 1)[1].split("/", 1)[1]
    rss_path = created["urls"]["rss"].split("://", 1)[1].split("/", 1)[1]
    feed = client.get("/" + json_path)
    assert feed.status_code == 200 and feed["Content-Type"].startswith("application/feed+json")
    items = feed.json()["items"]
    assert [i["_mesh"]["id"] for i in items] == [two.pk, one.pk]
    assert items[0]["url"].endswith(f"/contacts/{two.pk}/") and items[0]["title"].startswith("Person 2:")
    rss = client.get("/" + rss_path)
    titles = [t.text for t in ET.fromstring(rss.content).iter("title")]
    assert rss.status_code == 200 and titles[1].startswith("Person 2:") and titles[2].startswith("Person 1:")
    assert client.get("/feeds/cold/mf_nonsense.json").status_code == 404
    assert run_json("mesh_rank", "--feed-token", "revoke", "--workspace", "acme") == {"revoked": 1}
    assert client.get("/" + json_path).status_code == 404
    # The page makes one too, shown once.
    response = member_client.post("/cold/", {"action": "create"})
    assert response.status_code == 302  # the token is shown by the page it redirects to, once
    page = member_client.get("/cold/").content.decode()
    assert "/feeds/cold/mf_" in page and ".rss" in page
    assert "/feeds/cold/mf_" not in member_client.get("/cold/").content.decode()


def test_the_order_is_the_documented_formula(workspace, people):
    """Lateness over the interval, times (1 + strength/100); ties: stronger, then lower id."""
    one, two, three = people
    contact_cadence_set(workspace=workspace, contact=three, every_days=2, at_most_days=4)
    strengths_current(workspace=workspace)
    now = timezone.now()
    entries = going_cold(workspace=workspace, now=now)
    expected = []
    for row in ContactStrength.objects.filter(workspace=workspace).select_related("contact__keep_in_touch"):
        every = row.contact.keep_in_touch.every_days
        late = (now - row.last_touch_at) / dt.timedelta(days=1) - every
        if late > 0:
            expected.append((-late / every * (1 + row.score / 100), -row.score, row.contact_id))
    assert [e.contact_id for e in entries] == [c for *_, c in sorted(expected)] == [two.pk, three.pk, one.pk]
    assert [e.urgency for e in entries] == pytest.approx([-u for u, *_ in sorted(expected)])
    assert entries.total == 3 and going_cold(workspace=workspace, now=now, limit=1).total == 3


def test_owners_set_the_tier_defaults_on_the_page_and_members_read_them(workspace, member_client, teammate):
    page = member_client.get("/cold/").content.decode()
    assert 'name="strong-every"' in page and 'value="14d"' in page  # the built-in default, editable
    form = {"strong-every": "1w", "strong-at_most": "3w", "steady-every": "30", "steady-at_most": "",
            "weak-every": "", "weak-at_most": "", "faint-every": "", "faint-at_most": ""}
    assert member_client.post("/cold/cadences/", form).status_code == 302
    assert tier_cadences(workspace=workspace) == {"strong": (7, 21), "steady": (30, 90), "weak": None, "faint": None}
    for bad, says in (({"weak-every": "60", "weak-at_most": "30"}, "shorter than the interval"),
                      ({"weak-every": "0"}, "not a positive number"),
                      ({"faint-at_most": "90"}, "without an interval")):
        response = member_client.post("/cold/cadences/", {**form, "strong-every": "2d", **bad}, follow=True)
        assert says in response.content.decode()
        assert tier_cadences(workspace=workspace)["strong"] == (7, 21)  # all or nothing
    member_client.force_login(teammate)
    page = member_client.get("/cold/").content.decode()
    assert 'name="strong-every"' not in page and "strong: every 7 d, at most 21 d" in page
    assert member_client.post("/cold/cadences/", {**form, "strong-every": "1d"}).status_code == 403
    assert tier_cadences(workspace=workspace)["strong"] == (7, 21)


def test_the_cold_feed_answers_304_to_its_etag_and_is_rate_limited(workspace, people, client, settings):
    cache.clear()
    settings.MESH_FEED_RATE_PER_MINUTE = 4  # small limits are counted exactly (streams.throttle)
    _row, token = cold_feed_token_create(workspace=workspace)
    first = client.get(f"/feeds/cold/{token}.json")
    assert first.status_code == 200 and first["ETag"].startswith('"')
    again = client.get(f"/feeds/cold/{token}.json", HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304 and again.content == b"" and again["ETag"] == first["ETag"]
    touch(workspace, 1, 0.5, key="called-back")  # person 1 is no longer due: a new document
    changed = client.get(f"/feeds/cold/{token}.json", HTTP_IF_NONE_MATCH=first["ETag"])
    assert changed.status_code == 200 and changed["ETag"] != first["ETag"]
    assert client.get(f"/feeds/cold/{token}.rss").status_code == 200
    refused = client.get(f"/feeds/cold/{token}.rss")
    assert refused.status_code == 429 and int(refused["Retry-After"]) > 0
    cache.clear()


@pytest.mark.parametrize("limit", [None, 50])
def test_entries_say_what_the_contact_page_says(workspace, limit):
    """Names and explanations come from one raw read of the shown rows (selectors.ranking
    ._cold_details): the same words as ``strength_explained`` reads from the row, a contact
    without a name as "Contact N"."""
    from streams.models import Contact
    from streams.selectors.ranking import strength_explained

    now = timezone.now()
    named = Contact.objects.create(workspace=workspace, name="Ana")
    unnamed = Contact.objects.create(workspace=workspace, name="")
    for contact, channels in ((named, ["email", "sms"]), (unnamed, [])):
        ContactStrength.objects.create(
            contact=contact, workspace=workspace, score=40, tier="steady", last_90=3 if channels else 0,
            in_90=2 if channels else 0, out_90=1 if channels else 0, channels_90=channels, conversations=7,
            last_touch_at=now - dt.timedelta(days=60), computed_on=now.date())
    entries = going_cold(workspace=workspace, now=now, limit=limit, cadences={"steady": (30, 90)})
    assert {e.contact_id: e.name for e in entries} == {named.pk: "Ana", unnamed.pk: f"Contact {unnamed.pk}"}
    for e in entries:
        assert e.explained == strength_explained(ContactStrength.objects.get(contact_id=e.contact_id))
    assert "on 2 channels" in next(e.explained for e in entries if e.contact_id == named.pk)
