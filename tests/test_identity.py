"""Identity normalization (the table in DESIGN.md) and resolution to contacts, checked both on
the functions and through the ingest path a device event takes."""

from __future__ import annotations

import pytest
from django.db import transaction

from connectors.base import RawItem
from connectors.device.connector import DeviceConnector
from streams.identity import (
    InvalidIdentity,
    Wanted,
    identities_resolve,
    identity_mark_self,
    normalize,
    normalize_email,
    normalize_phone,
    normalize_x,
)
from streams.ingest import ingest_batch
from streams.models import Activity, Contact, Identity, Participant, TimelineEntry, Workspace
from tests.factories import make_event

# --- phone --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    ["(415) 555-0100", "+1 415-555-0100", "14155550100", "4155550100", "tel:+14155550100", " 415.555.0100 "],
)
def test_phone_us_formats_are_one_e164_number(raw):
    assert normalize_phone(raw, "US") == "+14155550100"


def test_phone_possible_but_invalid_555_number_still_e164():
    import phonenumbers

    number = phonenumbers.parse("+1 555 555 0100")
    assert not phonenumbers.is_valid_number(number)  # the premise: possible, not valid
    assert normalize_phone("(555) 555-0100", "US") == "+15555550100"


def test_phone_short_code_stays_as_given():
    assert normalize_phone("72345", "US") == "72345"
    assert normalize_phone("72345", "GB") == "72345"


@pytest.mark.parametrize("sender", ["AMAZON", "Uber", "DHL-Express"])
def test_phone_alphanumeric_sender_stays_as_given(sender):
    assert normalize_phone(sender, "US") == sender


def test_phone_region_gb():
    assert normalize_phone("020 7946 0018", "GB") == "+442079460018"
    assert normalize_phone("020 7946 0018", "gb") == "+442079460018"
    # A number written with its country code does not depend on the region.
    assert normalize_phone("+44 20 7946 0018", "US") == "+442079460018"


def test_phone_region_changes_the_meaning_of_a_national_number():
    assert normalize_phone("030 1234567", "DE") == "+49301234567"
    assert normalize_phone("030 1234567", "DE") != normalize_phone("030 1234567", "GB")


def test_phone_json_number_is_accepted():
    assert normalize_phone(4155550100, "US") == "+14155550100"


def test_phone_local_only_number_is_not_made_into_a_fake_e164():
    # 7 digits without an area code: "+1" + 7 digits would merge people across area codes.
    assert normalize_phone("555-0100", "US") == "5550100"
    assert not normalize_phone("555-0100", "US").startswith("+")


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("", "empty"),
        ("   ", "empty"),
        ("++12", "'++12'"),
        ("abc!!", "'abc!!'"),
        ("1234567890123456789012", "'1234567890123456789012'"),
        ("+4477", "'+4477'"),
        (None, "empty"),
        (b"+14155550100", "must be text"),
        (4.5, "must be text"),
    ],
)
def test_phone_bad_input_raises_invalid_identity_with_message(raw, fragment):
    with pytest.raises(InvalidIdentity) as info:
        normalize_phone(raw, "US")
    message = str(info.value)
    assert fragment in message
    assert "phone" in message or "text" in message


# --- email --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Ana@Example.COM", "ana@example.com"),
        ("ana@bücher.de", "ana@xn--bcher-kva.de"),
        ("Ana@Bücher.DE", "ana@xn--bcher-kva.de"),
        ("<ana@example.com>", "ana@example.com"),
        ("mailto:ana@example.com", "ana@example.com"),
        ("MAILTO:Ana@Example.com", "ana@example.com"),
        (" <mailto:ana@example.com> ", "ana@example.com"),
        ("ana@example.com.", "ana@example.com"),
        ("o'brien+tag@example.co.uk", "o'brien+tag@example.co.uk"),
        ("first.last-x_y=z@sub.example.io", "first.last-x_y=z@sub.example.io"),
    ],
)
def test_email_normalization(raw, expected):
    assert normalize_email(raw) == expected


@pytest.mark.parametrize(
    "raw, fragment",
    [
        ("", "not an email address"),
        ("no-at", "not an email address"),
        ("a@@b.c", "not an email address"),
        ("a@b", "no dot"),
        ("a b@c.d", "not an email address"),
        ("@example.com", "not an email address"),
        ("ana@", "not an email address"),
        ("ana@exa..mple.com", "bad domain"),
        ("ana@exa_mple.com", "bad domain"),
        ("x" * 65 + "@example.com", "not an email address"),
        (None, "not an email address"),
        (12345, "not an email address"),
        (["a@b.c"], "must be text"),
    ],
)
def test_email_bad_input_raises_invalid_identity_with_message(raw, fragment):
    with pytest.raises(InvalidIdentity) as info:
        normalize_email(raw)
    assert fragment in str(info.value)


# --- x and other kinds --------------------------------------------------------------------------


def test_x_numeric_user_id():
    assert normalize_x("12345") == "12345"
    assert normalize_x(" 12345 ") == "12345"
    assert normalize_x(12345) == "12345"
    assert normalize_x("0012345") == "12345"


@pytest.mark.parametrize("raw", ["@handle", "handle", "", "12a", "1" * 21])
def test_x_handle_or_garbage_is_invalid(raw):
    with pytest.raises(InvalidIdentity, match="numeric user ids"):
        normalize_x(raw)


def test_normalize_dispatches_by_kind_with_aliases():
    assert normalize("email", "Ana@Example.COM") == ("email", "ana@example.com")
    assert normalize(" EMAIL ", "Ana@Example.COM") == ("email", "ana@example.com")
    assert normalize("phone", "(415) 555-0100") == ("phone", "+14155550100")
    assert normalize("tel", "(415) 555-0100") == ("phone", "+14155550100")
    assert normalize("sms", "020 7946 0018", region="GB") == ("phone", "+442079460018")
    assert normalize("twitter", "12345") == ("x", "12345")
    assert normalize("x", "12345") == ("x", "12345")
    # A third-party kind: trimmed, kept as given.
    assert normalize("mastodon", "  @ana@social.example ") == ("mastodon", "@ana@social.example")


@pytest.mark.parametrize("kind, value", [("Bad Kind", "v"), ("", "v"), ("9lives", "v"), ("mastodon", "  "), ("x", "@handle")])
def test_normalize_refuses_bad_kind_or_value(kind, value):
    with pytest.raises(InvalidIdentity):
        normalize(kind, value)


# --- workspace region ---------------------------------------------------------------------------


def _ingest(workspace, device, *events):
    connector = DeviceConnector({}, {}, context={"device_id": device.pk})
    return ingest_batch(
        workspace=workspace,
        connector=connector,
        device=device,
        items=[RawItem(f"{device.pk}/{e['id']}", e) for e in events],
    )


def _device(workspace, name="Phone"):
    from streams.services import device_create

    return device_create(workspace=workspace, name=name, kind="phone")[0]


def test_workspace_region_prefers_its_own_setting(settings, db):
    settings.MESH_DEFAULT_REGION = "DE"
    gb = Workspace.objects.create(slug="uk", name="UK", default_region="GB")
    blank = Workspace.objects.create(slug="blank", name="Blank", default_region="")
    assert gb.region == "GB"
    assert blank.region == "DE"


def test_gb_workspace_two_formats_of_one_number_land_on_one_contact(db):
    ws = Workspace.objects.create(slug="uk", name="UK", default_region="GB")
    device = _device(ws)
    result = _ingest(
        ws, device,
        make_event("c1", participants=[{"kind": "phone", "value": "020 7946 0018", "role": "from", "name": "Olly"}]),
        make_event("c2", occurred_at="2026-05-02T10:00:00Z",
                   participants=[{"kind": "phone", "value": "+44 (0)20 7946 0018", "role": "from"}]),
    )
    assert result.new == 2 and result.failed == 0
    identity = Identity.objects.get(workspace=ws, kind="phone")
    assert identity.value == "+442079460018"
    assert Contact.objects.filter(workspace=ws).count() == 1
    contact = identity.contact
    assert contact.name == "Olly"
    assert TimelineEntry.objects.filter(kind="c", owner_id=contact.pk).count() == 2
    assert contact.__class__.objects.get(pk=contact.pk).activity_count == 2


def test_blank_region_uses_mesh_default_region_setting(settings, db):
    settings.MESH_DEFAULT_REGION = "DE"
    ws = Workspace.objects.create(slug="berlin", name="Berlin", default_region="")
    device = _device(ws)
    result = _ingest(
        ws, device,
        make_event("c1", participants=[{"kind": "phone", "value": "030 1234567", "role": "from"}]),
        make_event("c2", occurred_at="2026-05-02T10:00:00Z",
                   participants=[{"kind": "phone", "value": "+49 30 1234567", "role": "from"}]),
    )
    assert result.new == 2
    assert list(Identity.objects.filter(workspace=ws).values_list("kind", "value")) == [("phone", "+49301234567")]
    assert Contact.objects.filter(workspace=ws).count() == 1


def test_us_default_same_number_in_three_formats_one_contact(workspace, device):
    assert workspace.region == "US"
    _ingest(
        workspace, device,
        make_event("a", participants=[{"kind": "phone", "value": "(415) 555-0100", "role": "from"}]),
        make_event("b", participants=[{"kind": "tel", "value": "tel:+14155550100", "role": "from"}]),
        make_event("c", participants=[{"kind": "sms", "value": "4155550100", "role": "to"}]),
    )
    idents = list(Identity.objects.filter(workspace=workspace).values_list("kind", "value"))
    assert idents == [("phone", "+14155550100")]
    contact = Contact.objects.get(workspace=workspace)
    assert TimelineEntry.objects.filter(kind="c", owner_id=contact.pk).count() == 3


# --- invalid participants -----------------------------------------------------------------------


def test_event_with_one_invalid_participant_still_imports(workspace, device):
    event = make_event(
        "mixed",
        type="note",
        participants=[
            {"kind": "phone", "value": "abc!!", "role": "from"},
            {"kind": "email", "value": "Ana@Example.COM", "role": "to", "name": "Ana"},
        ],
    )
    result = _ingest(workspace, device, event)
    assert (result.new, result.failed) == (1, 0)
    activity = Activity.objects.get(workspace=workspace)
    assert activity.dedup_key == f"device:{device.pk}/mixed"
    invalid = activity.extra["invalid_participants"]
    assert len(invalid) == 1
    bad = invalid[0]
    assert {k: bad[k] for k in ("role", "kind", "value")} == {"role": "from", "kind": "phone", "value": "abc!!"}
    assert "not a phone number" in bad["error"] and "abc!!" in bad["error"]
    # The good participant is a contact with the activity on its timeline; the bad one is nothing.
    assert list(Identity.objects.filter(workspace=workspace).values_list("kind", "value")) == [
        ("email", "ana@example.com")
    ]
    contact = Contact.objects.get(workspace=workspace)
    assert contact.name == "Ana"
    assert list(Participant.objects.filter(activity=activity).values_list("identity__value", "role")) == [
        ("ana@example.com", "to")
    ]
    assert TimelineEntry.objects.filter(kind="c", owner_id=contact.pk, activity=activity).exists()


def test_event_with_only_invalid_participants_imports_without_contacts(workspace, device):
    _ingest(workspace, device, make_event("x1", participants=[{"kind": "email", "value": "a@@b.c", "role": "from"}]))
    activity = Activity.objects.get(workspace=workspace)
    assert [p["value"] for p in activity.extra["invalid_participants"]] == ["a@@b.c"]
    assert not Contact.objects.filter(workspace=workspace).exists()
    assert TimelineEntry.objects.filter(kind="d", owner_id=device.pk, activity=activity).exists()


def test_short_code_and_alphanumeric_senders_are_contacts_not_failures(workspace, device):
    result = _ingest(
        workspace, device,
        make_event("s1", type="sms.received", participants=[{"kind": "phone", "value": "72345", "role": "from"}]),
        make_event("s2", type="sms.received", participants=[{"kind": "phone", "value": "AMAZON", "role": "from"}]),
    )
    assert (result.new, result.failed) == (2, 0)
    assert sorted(Identity.objects.filter(workspace=workspace).values_list("value", flat=True)) == ["72345", "AMAZON"]
    assert sorted(Contact.objects.filter(workspace=workspace).values_list("name", flat=True)) == ["72345", "AMAZON"]
    assert not any("invalid_participants" in a.extra for a in Activity.objects.filter(workspace=workspace))


# --- identities_resolve -------------------------------------------------------------------------


def test_identities_resolve_creates_one_contact_per_unknown_identity(workspace):
    with transaction.atomic():
        found = identities_resolve(
            workspace=workspace,
            wanted={
                ("phone", "+14155550100"): Wanted(display="Ana Lima", needs_contact=True),
                ("email", "bo@example.com"): Wanted(display="", needs_contact=True),
            },
        )
    assert set(found) == {("phone", "+14155550100"), ("email", "bo@example.com")}
    ana = found[("phone", "+14155550100")]
    bo = found[("email", "bo@example.com")]
    assert ana.contact_id and bo.contact_id and ana.contact_id != bo.contact_id
    assert ana.home_contact_id == ana.contact_id
    assert Contact.objects.get(pk=ana.contact_id).name == "Ana Lima"  # named after the display value
    assert Contact.objects.get(pk=bo.contact_id).name == "bo@example.com"  # no display: the value
    assert ana.display == "Ana Lima"
    assert Contact.objects.filter(workspace=workspace).count() == 2
    assert Identity.objects.filter(workspace=workspace).count() == 2


def test_identities_resolve_reuses_existing_identities(workspace, other_workspace):
    with transaction.atomic():
        first = identities_resolve(
            workspace=workspace, wanted={("phone", "+14155550100"): Wanted("Ana", True)}
        )
    with transaction.atomic():
        second = identities_resolve(
            workspace=workspace,
            wanted={
                ("phone", "+14155550100"): Wanted("Someone else", True),
                ("x", "12345"): Wanted("@ana", True),
            },
        )
    assert second[("phone", "+14155550100")].pk == first[("phone", "+14155550100")].pk
    assert second[("phone", "+14155550100")].contact_id == first[("phone", "+14155550100")].contact_id
    # The existing contact keeps its name; only the new identity got a new contact.
    assert Contact.objects.get(pk=first[("phone", "+14155550100")].contact_id).name == "Ana"
    assert Contact.objects.filter(workspace=workspace).count() == 2
    assert Contact.objects.get(pk=second[("x", "12345")].contact_id).name == "@ana"
    # Another workspace resolving the same value gets its own identity and contact.
    with transaction.atomic():
        other = identities_resolve(
            workspace=other_workspace, wanted={("phone", "+14155550100"): Wanted("Ana", True)}
        )
    assert other[("phone", "+14155550100")].pk != first[("phone", "+14155550100")].pk
    assert other[("phone", "+14155550100")].contact.workspace_id == other_workspace.pk


def test_identities_resolve_without_contact_then_adopted(workspace):
    with transaction.atomic():
        found = identities_resolve(
            workspace=workspace, wanted={("email", "noreply@shop.example"): Wanted("Shop", needs_contact=False)}
        )
    ident = found[("email", "noreply@shop.example")]
    assert ident.contact_id is None
    assert not Contact.objects.filter(workspace=workspace).exists()
    with transaction.atomic():
        again = identities_resolve(
            workspace=workspace, wanted={("email", "noreply@shop.example"): Wanted("", needs_contact=True)}
        )
    adopted = again[("email", "noreply@shop.example")]
    assert adopted.pk == ident.pk
    assert adopted.contact_id is not None
    adopted.refresh_from_db()
    assert adopted.contact.name == "Shop"
    assert adopted.home_contact_id == adopted.contact_id
    assert Contact.objects.filter(workspace=workspace).count() == 1


def test_identities_resolve_empty_is_empty(workspace):
    assert identities_resolve(workspace=workspace, wanted={}) == {}


# --- self identities and direction --------------------------------------------------------------


def _note(event_id, sender, *, to=None, occurred_at="2026-05-01T10:00:00Z"):
    participants = [{"kind": "phone", "value": sender, "role": "from"}]
    if to:
        participants.append({"kind": "email", "value": to, "role": "to"})
    return make_event(event_id, type="note", occurred_at=occurred_at, participants=participants)


def test_note_from_someone_else_is_inbound(workspace, device):
    _ingest(workspace, device, _note("n1", "(415) 555-0100"))
    assert Activity.objects.get(workspace=workspace).direction == "in"


def test_identity_mark_self_makes_later_activities_outbound(workspace, device):
    _ingest(workspace, device, _note("before", "(415) 555-0100", to="ana@example.com"))
    before = Activity.objects.get(dedup_key=f"device:{device.pk}/before")
    assert before.direction == "in"
    old_contact = Identity.objects.get(workspace=workspace, kind="phone").contact
    assert TimelineEntry.objects.filter(kind="c", owner_id=old_contact.pk).count() == 1

    ident = identity_mark_self(workspace=workspace, kind="tel", value="+1 415-555-0100", display="My phone")
    assert (ident.kind, ident.value, ident.is_self) == ("phone", "+14155550100", True)
    assert ident.contact.is_self

    _ingest(workspace, device, _note("after", "4155550100", to="Ana@Example.com", occurred_at="2026-05-03T10:00:00Z"))
    after = Activity.objects.get(dedup_key=f"device:{device.pk}/after")
    assert after.direction == "out"
    # The owner has no contact timeline; the other party's contact has both activities.
    assert not TimelineEntry.objects.filter(kind="c", owner_id=ident.contact_id).exists()
    ana = Identity.objects.get(workspace=workspace, kind="email").contact
    assert set(TimelineEntry.objects.filter(kind="c", owner_id=ana.pk).values_list("activity_id", flat=True)) == {
        before.pk, after.pk
    }
    assert TimelineEntry.objects.get(kind="c", owner_id=ana.pk, activity=after).direction == "out"
    # The contact the number had before it was marked lost its timeline row with it.
    assert not TimelineEntry.objects.filter(kind="c", owner_id=old_contact.pk).exists()
    # Still one identity row for the number.
    assert Identity.objects.filter(workspace=workspace, kind="phone").count() == 1


def test_identity_mark_self_new_identity_and_idempotent(workspace):
    first = identity_mark_self(workspace=workspace, kind="email", value="Me@Example.ORG")
    second = identity_mark_self(workspace=workspace, kind="email", value="me@example.org")
    assert first.pk == second.pk
    assert first.value == "me@example.org"
    assert Contact.objects.filter(workspace=workspace, is_self=True).count() == 1
    with pytest.raises(InvalidIdentity):
        identity_mark_self(workspace=workspace, kind="email", value="not-an-address")


def test_explicit_direction_in_data_wins_over_self(workspace, device):
    identity_mark_self(workspace=workspace, kind="phone", value="+14155550100")
    event = _note("explicit", "+14155550100")
    event["data"] = {"direction": "in"}
    _ingest(workspace, device, event)
    assert Activity.objects.get(workspace=workspace).direction == "in"
