"""Name precedence (streams.identity.NAME_SOURCES): a name from a weaker source never replaces
one set by hand or learned from a stronger one; within one source the newer display wins (an
X account renamed); merges keep the stronger name."""

from __future__ import annotations

import pytest

from streams.contacts import contact_rename
from streams.identity import NAME_SOURCES, display_source, name_wins
from streams.models import Identity
from streams.services import contact_merge
from tests.factories import contact_for, ingest_drafts, ingest_events, make_event

NUMBER = "+14155550100"


def sms(eid, display, *, day, backup=False, number=NUMBER):
    return (eid, {"channel": "sms", "occurred_at": f"2026-05-{day:02d}T10:00:00+00:00", "direction": "in",
                  "extra": {"origin": "sms_backup"} if backup else {},
                  "participants": [{"role": "from", "kind": "phone", "value": number, "display": display}]})


def mail(eid, address, display, *, day):
    return (eid, {"channel": "email", "occurred_at": f"2026-05-{day:02d}T10:00:00+00:00", "direction": "in",
                  "participants": [{"role": "from", "kind": "email", "value": address, "display": display}]})


def tweet(eid, user_id, handle, *, day):
    return (eid, {"channel": "twitter", "verb": "mention", "occurred_at": f"2026-05-{day:02d}T10:00:00+00:00",
                  "direction": "in", "participants": [{"role": "author", "kind": "x", "value": user_id,
                                                       "display": handle}]})


def named(workspace, kind, value):
    c = contact_for(workspace, kind, value)
    return c.name, c.name_source


def test_the_ranking_is_documented_weakest_first():
    assert NAME_SOURCES == ("address", "phone", "email", "x", "address_book", "hand")
    assert display_source("sms", {"origin": "sms_backup"}, "Ana") == "address_book"
    assert display_source("email", {}, "Ana") == "email"
    assert display_source("device", {}, "Ana") == "phone"
    assert display_source("twitter", {}, "@ana") == "address"  # a handle is an address, not a name
    assert not name_wins("address_book", "hand", same_name_updated=True)
    assert name_wins("email", "phone", same_name_updated=False)
    assert not name_wins("phone", "email", same_name_updated=True)
    assert not name_wins("email", "", same_name_updated=False)  # names from before sources: only their own update


def test_a_contact_named_from_its_address_takes_the_first_display(workspace):
    ingest_drafts(workspace, [sms("s1", "", day=1)])
    assert named(workspace, "phone", NUMBER) == (NUMBER, "address")
    ingest_drafts(workspace, [sms("s2", "Ana", day=2)])
    assert named(workspace, "phone", NUMBER) == ("Ana", "phone")


def test_a_name_set_by_hand_is_never_replaced(workspace):
    ingest_drafts(workspace, [sms("s1", "Ana", day=1)])
    contact_rename(workspace=workspace, contact=contact_for(workspace, "phone", NUMBER), name="Ana Souza")
    ingest_drafts(workspace, [sms("s2", "Mom", day=5), sms("s3", "Ana S. (address book)", day=6, backup=True)])
    assert named(workspace, "phone", NUMBER) == ("Ana Souza", "hand")
    # The identity's own display still follows its sources (it is not the contact's name).
    assert Identity.objects.get(value=NUMBER).display == "Ana S. (address book)"


def test_a_newer_phone_nickname_does_not_replace_the_address_book_name(workspace, device):
    ingest_drafts(workspace, [sms("s1", "Ana Souza", day=1, backup=True)])
    ingest_events(workspace, device, [make_event("c1", occurred_at="2026-06-01T10:00:00Z",
                                                 participants=[{"kind": "phone", "value": NUMBER, "role": "from",
                                                                "name": "Mom"}])])
    ident = Identity.objects.get(value=NUMBER)
    assert (ident.display, ident.display_source) == ("Ana Souza", "address_book")
    assert named(workspace, "phone", NUMBER) == ("Ana Souza", "address_book")


def test_an_older_address_book_name_replaces_a_newer_nickname(workspace):
    ingest_drafts(workspace, [sms("s1", "Mom", day=9)])
    ingest_drafts(workspace, [sms("s2", "Ana Souza", day=1, backup=True)])  # a backup of older texts
    assert named(workspace, "phone", NUMBER) == ("Ana Souza", "address_book")


def test_within_one_source_the_newer_display_wins_and_the_older_does_not(workspace):
    ingest_drafts(workspace, [tweet("t1", "42", "@ana", day=1), tweet("t2", "42", "@ana_new", day=5)])
    assert named(workspace, "x", "42") == ("@ana_new", "address")
    ingest_drafts(workspace, [tweet("t3", "42", "@ana", day=3)])  # an older item: changes nothing
    assert named(workspace, "x", "42") == ("@ana_new", "address")


def test_a_stronger_display_of_another_identity_renames_the_merged_contact(workspace):
    ingest_drafts(workspace, [sms("s1", "Mom", day=1), mail("m1", "ana@example.com", "", day=1)])
    phone, email = contact_for(workspace, "phone", NUMBER), contact_for(workspace, "email", "ana@example.com")
    survivor = contact_merge(workspace=workspace, target=phone, other=email)
    assert survivor.name == "Mom"  # the mail contact had only its address
    ingest_drafts(workspace, [mail("m2", "ana@example.com", "Ana Souza", day=2)])
    assert named(workspace, "phone", NUMBER) == ("Ana Souza", "email")
    ingest_drafts(workspace, [sms("s2", "Mommy", day=3)])  # the nickname changes: weaker, stays out
    assert named(workspace, "phone", NUMBER) == ("Ana Souza", "email")


@pytest.mark.parametrize(("survivor_first", "expected"), [(True, "Ana Souza"), (False, "Ana Souza")])
def test_a_merge_keeps_the_stronger_name_whichever_survives(workspace, survivor_first, expected):
    ingest_drafts(workspace, [sms("s1", "Mom", day=1), mail("m1", "ana@example.com", "Ana Souza", day=1)])
    phone, email = contact_for(workspace, "phone", NUMBER), contact_for(workspace, "email", "ana@example.com")
    target, other = (phone, email) if survivor_first else (email, phone)
    assert contact_merge(workspace=workspace, target=target, other=other).name == expected


def test_a_merge_between_equals_keeps_the_survivors_name(workspace):
    ingest_drafts(workspace, [mail("m1", "ana@example.com", "Ana Souza", day=1),
                              mail("m2", "ana@work.example", "A. Souza (Acme)", day=2)])
    home, work = contact_for(workspace, "email", "ana@example.com"), contact_for(workspace, "email", "ana@work.example")
    assert contact_merge(workspace=workspace, target=work, other=home).name == "A. Souza (Acme)"
