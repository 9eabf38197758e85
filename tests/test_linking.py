"""Merge suggestions (streams.linking): each kind of evidence on its own, name normalization,
the threshold, rejections remembered, the workspace's auto-merge score, and the CLI's shapes."""

from __future__ import annotations

import pytest

from streams.identity import identity_mark_self
from streams.linking import (
    KINDS,
    SUGGEST_AT,
    addresses_in,
    merge_suggestion_reject,
    merge_suggestions_refresh,
    merge_suggestions_score,
    name_keys,
    name_tokens,
    signature_block,
)
from streams.models import Contact, MergeSuggestion
from streams.services import contact_merge
from tests.factories import contact_for, ingest_drafts
from tests.fakes.cli import run, run_json

ANA_NUMBER = "+14155550100"
ANA_OTHER_NUMBER = "+14155550111"
ME = {"role": "to", "kind": "email", "value": "me@mesh.example"}


def mail_from(eid, address, *, display="", text="Hello", thread="", day=1, to=None):
    return (eid, {"channel": "email", "verb": "receive", "direction": "in", "thread_key": thread,
                  "occurred_at": f"2026-05-{day:02d}T10:00:00+00:00", "text": text,
                  "participants": [{"role": "from", "kind": "email", "value": address, "display": display},
                                   to or ME]})


def text_from(eid, number, *, display="", backup=False, day=1):
    return (eid, {"channel": "sms", "verb": "receive", "direction": "in", "text": "hi",
                  "occurred_at": f"2026-05-{day:02d}T11:00:00+00:00",
                  "extra": {"origin": "sms_backup"} if backup else {},
                  "participants": [{"role": "from", "kind": "phone", "value": number, "display": display}]})


def x_mention(eid, user_id, handle, *, profile_name=""):
    fields = {"channel": "twitter", "verb": "mention", "direction": "in", "text": "hello",
              "occurred_at": "2026-05-03T12:00:00+00:00",
              "participants": [{"role": "author", "kind": "x", "value": user_id, "display": handle}]}
    if profile_name:
        fields["users"] = {user_id: {"username": handle.lstrip("@"), "name": profile_name}}
    return (eid, fields)


@pytest.fixture
def owned(workspace):
    identity_mark_self(workspace=workspace, kind="email", value="me@mesh.example")
    return workspace


def pair_of(a: Contact, b: Contact) -> tuple[int, int]:
    return (a.pk, b.pk) if a.pk < b.pk else (b.pk, a.pk)


def kinds(scored, a, b) -> list[str]:
    return [r.kind for r in scored[pair_of(a, b)].reasons]


# --- normalization ------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "tokens"), [
    ("Ana Souza", ["ana", "souza"]),
    ("Souza, Ána", ["ana", "souza"]),
    ("ANA  SOUZA", ["ana", "souza"]),
    ("Ana (work)", ["ana"]),
    ("A. Souza", ["a", "souza"]),
    ("José-María Núñez", ["jose", "maria", "nunez"]),
])
def test_names_compare_without_accents_case_order_or_notes(name, tokens):
    assert name_tokens(name) == tokens


def test_name_keys_full_names_and_initials():
    full, cut = name_keys("Ana Souza")
    assert full == ("ana", "souza") and full == name_keys("Souza, Ana")[0]
    assert ("a", "souza") in cut and ("ana", "s") in cut
    assert name_keys("A. Souza") == (None, {("a", "souza")})
    assert name_keys("Ana S.") == (None, {("ana", "s")})
    assert name_keys("Ana") == (None, set())  # a first name alone is no evidence


def test_signature_block_is_after_the_dash_line_or_the_last_lines():
    assert signature_block("Hi\nsee you\n-- \nAna\n+1 415 555 0100") == "Ana\n+1 415 555 0100"
    long = "\n".join(f"line {n}" for n in range(20))
    assert signature_block(long).splitlines() == [f"line {n}" for n in range(14, 20)]


def test_addresses_in_text_are_normalized_identities():
    found = addresses_in("Ana Souza · Ana@Example.com · (415) 555-0100", "US")
    assert found == {("email", "ana@example.com"), ("phone", ANA_NUMBER)}


# --- each reason on its own ----------------------------------------------------------------------


def test_same_name_across_channels(owned):
    ingest_drafts(owned, [mail_from("m1", "ana@example.com", display="Ana Souza"),
                          text_from("s1", ANA_NUMBER, display="Souza, Ána")])
    mail, phone = contact_for(owned, "email", "ana@example.com"), contact_for(owned, "phone", ANA_NUMBER)
    scored = merge_suggestions_score(workspace=owned)
    assert kinds(scored, mail, phone) == ["same_name"]
    assert scored[pair_of(mail, phone)].score == KINDS["same_name"].weight >= SUGGEST_AT


def test_same_name_on_one_channel_only_is_weaker_than_the_threshold(owned):
    ingest_drafts(owned, [mail_from("m1", "ana@example.com", display="Ana Souza"),
                          mail_from("m2", "asouza@corp.example", display="Ana Souza")])
    scored = merge_suggestions_score(workspace=owned)
    a, b = contact_for(owned, "email", "ana@example.com"), contact_for(owned, "email", "asouza@corp.example")
    assert kinds(scored, a, b) == ["same_name"] and scored[pair_of(a, b)].score < SUGGEST_AT


def test_a_name_many_contacts_share_counts_for_less(owned):
    ingest_drafts(owned, [mail_from("m1", "ana@example.com", display="Ana Souza"),
                          text_from("s1", ANA_NUMBER, display="Ana Souza"),
                          text_from("s2", "+14155550199", display="Ana Souza")])
    scored = merge_suggestions_score(workspace=owned)
    a, b = contact_for(owned, "email", "ana@example.com"), contact_for(owned, "phone", ANA_NUMBER)
    assert scored[pair_of(a, b)].score == pytest.approx(KINDS["same_name"].weight / 2)
    assert "3 contacts share it" in scored[pair_of(a, b)].reasons[0].text


def test_initials_fit_a_full_name(owned):
    ingest_drafts(owned, [mail_from("m1", "ana@example.com", display="A. Souza"),
                          text_from("s1", ANA_NUMBER, display="Ana Souza")])
    scored = merge_suggestions_score(workspace=owned)
    a, b = contact_for(owned, "email", "ana@example.com"), contact_for(owned, "phone", ANA_NUMBER)
    assert kinds(scored, a, b) == ["initials"]
    assert "“A. Souza” fits “Ana Souza”" in scored[pair_of(a, b)].reasons[0].text


def test_a_name_made_from_an_address_is_no_evidence(owned):
    ingest_drafts(owned, [mail_from("m1", "ana@example.com"), text_from("s1", ANA_NUMBER, display="ana@example.com")])
    assert merge_suggestions_score(workspace=owned) == {}


def test_a_phone_number_in_a_mail_signature(owned):
    ingest_drafts(owned, [
        text_from("s1", ANA_NUMBER),
        mail_from("m1", "ana@work.example", text="See you Friday.\n\n-- \nAS, Sales\nMobile: (415) 555-0100"),
    ])
    mail, phone = contact_for(owned, "email", "ana@work.example"), contact_for(owned, "phone", ANA_NUMBER)
    scored = merge_suggestions_score(workspace=owned)
    assert kinds(scored, mail, phone) == ["signature"]
    assert "ana@work.example signs with +14155550100" in scored[pair_of(mail, phone)].reasons[0].text


def test_an_address_in_the_body_above_the_signature_is_not_a_signature(owned):
    body = "Please write to ben@example.com about it.\n" + "\n".join(f"line {n}" for n in range(8))
    ingest_drafts(owned, [mail_from("b1", "ben@example.com"), mail_from("m1", "ana@work.example", text=body)])
    assert merge_suggestions_score(workspace=owned) == {}


def test_one_thread_two_identities(owned):
    ingest_drafts(owned, [
        mail_from("m1", "ana@work.example", thread="t1", day=1),
        mail_from("m2", "ana@home.example", thread="t1", day=2),
    ])
    work, home = contact_for(owned, "email", "ana@work.example"), contact_for(owned, "email", "ana@home.example")
    assert kinds(merge_suggestions_score(workspace=owned), work, home) == ["thread"]


def test_two_people_in_the_same_message_are_a_conversation_not_one_person(owned):
    ben = {"role": "cc", "kind": "email", "value": "ben@example.com"}
    ingest_drafts(owned, [
        mail_from("m1", "ana@work.example", thread="t1", day=1, to=ben),
        mail_from("m2", "ben@example.com", thread="t1", day=2),
    ])
    assert merge_suggestions_score(workspace=owned) == {}


def test_an_x_handle_that_is_an_email_local_part(owned):
    ingest_drafts(owned, [x_mention("x1", "123", "@ana.souza"), mail_from("m1", "anasouza@example.com")])
    x, mail = contact_for(owned, "x", "123"), contact_for(owned, "email", "anasouza@example.com")
    scored = merge_suggestions_score(workspace=owned)
    assert kinds(scored, x, mail) == ["x_profile"]


def test_an_x_profile_name_counts_as_a_name(owned):
    ingest_drafts(owned, [x_mention("x1", "123", "@as77", profile_name="Ana Souza"),
                          mail_from("m1", "ana@example.com", display="Ana Souza")])
    x, mail = contact_for(owned, "x", "123"), contact_for(owned, "email", "ana@example.com")
    assert kinds(merge_suggestions_score(workspace=owned), x, mail) == ["same_name"]


def test_the_address_book_names_two_numbers_alike(owned):
    ingest_drafts(owned, [text_from("s1", ANA_NUMBER, display="Ana Souza", backup=True),
                          text_from("s2", ANA_OTHER_NUMBER, display="Ana Souza", backup=True)])
    a, b = contact_for(owned, "phone", ANA_NUMBER), contact_for(owned, "phone", ANA_OTHER_NUMBER)
    scored = merge_suggestions_score(workspace=owned)
    assert kinds(scored, a, b) == ["address_book"]
    assert scored[pair_of(a, b)].score == KINDS["address_book"].weight


def test_the_address_book_name_of_a_number_is_the_name_of_a_mail_contact(owned):
    ingest_drafts(owned, [text_from("s1", ANA_NUMBER, display="Ana Souza", backup=True),
                          mail_from("m1", "ana@example.com", display="Ana Souza")])
    a, b = contact_for(owned, "phone", ANA_NUMBER), contact_for(owned, "email", "ana@example.com")
    scored = merge_suggestions_score(workspace=owned)
    assert kinds(scored, a, b) == ["address_book"]  # the same clue as the name, counted once


def test_independent_clues_add_up(owned):
    ingest_drafts(owned, [
        text_from("s1", ANA_NUMBER, display="Ana Souza"),
        mail_from("m1", "ana@example.com", display="Ana Souza", text="Thanks!\n-- \nAna\n415 555 0100"),
    ])
    a, b = contact_for(owned, "phone", ANA_NUMBER), contact_for(owned, "email", "ana@example.com")
    found = merge_suggestions_score(workspace=owned)[pair_of(a, b)]
    assert [r.kind for r in found.reasons] == ["signature", "same_name"]
    assert found.score == pytest.approx(1 - (1 - 0.8) * (1 - 0.6))


# --- stored suggestions -------------------------------------------------------------------------


@pytest.fixture
def namesakes(owned):
    """Ana's mail and phone contacts, with the same name (one suggestion, same_name)."""
    ingest_drafts(owned, [mail_from("m1", "ana@example.com", display="Ana Souza"),
                          text_from("s1", ANA_NUMBER, display="Ana Souza")])
    return contact_for(owned, "email", "ana@example.com"), contact_for(owned, "phone", ANA_NUMBER)


def test_refresh_stores_what_reaches_the_threshold_and_nothing_merges(owned, namesakes):
    result = merge_suggestions_refresh(workspace=owned)
    assert (result.suggested, result.new, result.auto_merged) == (1, 1, 0)
    row = MergeSuggestion.objects.get(workspace=owned)
    assert (row.contact_a_id, row.contact_b_id) == pair_of(*namesakes)
    assert row.state == "open" and row.reasons[0]["kind"] == "same_name" and row.reasons[0]["text"]
    assert not Contact.objects.filter(workspace=owned).exclude(merged_into=None).exists()
    again = merge_suggestions_refresh(workspace=owned)
    assert (again.suggested, again.new) == (1, 0) and MergeSuggestion.objects.count() == 1


def test_a_rejection_is_remembered_until_stronger_evidence_appears(owned, namesakes):
    merge_suggestions_refresh(workspace=owned)
    row = MergeSuggestion.objects.get(workspace=owned)
    merge_suggestion_reject(workspace=owned, suggestion=row)
    merge_suggestions_refresh(workspace=owned)
    row.refresh_from_db()
    assert row.state == "rejected" and not MergeSuggestion.objects.filter(state="open").exists()
    # More of the same kind (initials) is not stronger: still rejected.
    ingest_drafts(owned, [mail_from("m2", "ana@example.com", display="A. Souza", day=9)])
    merge_suggestions_refresh(workspace=owned)
    row.refresh_from_db()
    assert row.state == "rejected"
    # A signature naming her number is a stronger kind: the pair comes back.
    ingest_drafts(owned, [mail_from("m3", "ana@example.com", text="Ok\n-- \nAna\n+1 415 555 0100", day=10)])
    result = merge_suggestions_refresh(workspace=owned)
    row.refresh_from_db()
    assert result.reopened == 1 and row.state == "open"
    # (m2 renamed the mail contact "A. Souza": the name evidence left is initials.)
    assert [r["kind"] for r in row.reasons] == ["signature", "initials"]


def test_a_rejection_follows_the_contacts_into_later_merges(owned, namesakes):
    mail, phone = namesakes
    merge_suggestions_refresh(workspace=owned)
    merge_suggestion_reject(workspace=owned, suggestion=MergeSuggestion.objects.get(workspace=owned))
    ingest_drafts(owned, [mail_from("m2", "ana@work.example", display="Ana W", day=3)])
    work = contact_for(owned, "email", "ana@work.example")
    contact_merge(workspace=owned, target=work, other=phone)  # phone now lives on "work"
    merge_suggestions_refresh(workspace=owned)
    assert not MergeSuggestion.objects.filter(state="open").exists()


def test_an_open_suggestion_without_evidence_any_more_is_closed(owned, namesakes):
    merge_suggestions_refresh(workspace=owned)
    contact_merge(workspace=owned, target=namesakes[0], other=namesakes[1])
    result = merge_suggestions_refresh(workspace=owned)
    assert result.closed == 1 and not MergeSuggestion.objects.exists()


def test_auto_merge_only_from_the_workspace_score(owned):
    ingest_drafts(owned, [text_from("s1", ANA_NUMBER, display="Ana Souza", backup=True),
                          text_from("s2", ANA_OTHER_NUMBER, display="Ana Souza", backup=True)])
    assert owned.auto_merge_score is None
    assert merge_suggestions_refresh(workspace=owned).auto_merged == 0
    owned.auto_merge_score = 0.95
    owned.save()
    assert merge_suggestions_refresh(workspace=owned).auto_merged == 0  # 0.9 is below it
    owned.auto_merge_score = 0.9
    owned.save()
    assert merge_suggestions_refresh(workspace=owned).auto_merged == 1
    row = MergeSuggestion.objects.get(workspace=owned)
    assert row.state == "accepted" and row.auto
    assert contact_for(owned, "phone", ANA_NUMBER).pk == contact_for(owned, "phone", ANA_OTHER_NUMBER).pk


# --- the command line ---------------------------------------------------------------------------


def test_cli_suggestions_accept_and_reject(owned, namesakes):
    mail, phone = namesakes
    rows = run_json("mesh_contacts", "suggestions", "--refresh", "--workspace", owned.slug)
    assert len(rows) == 1 and set(rows[0]) == {"id", "contacts", "score", "reasons"}
    assert [c["id"] for c in rows[0]["contacts"]] == sorted([mail.pk, phone.pk])
    assert set(rows[0]["contacts"][0]) >= {"id", "name", "identities", "counts", "last_activity_at", "merged_into"}
    assert rows[0]["reasons"][0]["kind"] == "same_name" and rows[0]["score"] == 0.6
    merged = run_json("mesh_contacts", "accept", str(rows[0]["id"]), "--into", str(phone.pk), "--workspace", owned.slug)
    assert merged["id"] == phone.pk and "email:ana@example.com" in merged["identities"]
    assert MergeSuggestion.objects.get(pk=rows[0]["id"]).state == "accepted"
    assert run_json("mesh_contacts", "suggestions", "--workspace", owned.slug) == []
    status, _out, err = run("mesh_contacts", "reject", str(rows[0]["id"]), "--workspace", owned.slug)
    assert status == 1 and "accepted" in err


def test_cli_reject_then_unknown_id(owned, namesakes):
    rows = run_json("mesh_contacts", "suggestions", "--refresh", "--workspace", owned.slug)
    assert run_json("mesh_contacts", "reject", str(rows[0]["id"]), "--workspace", owned.slug) == {
        "id": rows[0]["id"], "state": "rejected"}
    status, _out, err = run("mesh_contacts", "accept", "999999", "--workspace", owned.slug)
    assert status == 1 and "no suggestion 999999" in err


def test_suggestions_page_and_reject_button(owned, namesakes, client):
    from tests.factories import make_member

    client.force_login(make_member(owned, "sam", role="owner"))
    merge_suggestions_refresh(workspace=owned)
    row = MergeSuggestion.objects.get(workspace=owned)
    page = client.get("/contacts/suggestions/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "same name" in html and f"/contacts/{row.contact_a_id}/merge/?other={row.contact_b_id}" in html
    assert client.post(f"/contacts/suggestions/{row.pk}/reject/").status_code == 302
    row.refresh_from_db()
    assert row.state == "rejected"
    assert client.post("/contacts/suggestions/999999/reject/").status_code == 404


def test_the_look_again_button_refreshes_on_demand(owned, namesakes, client):
    from tests.factories import make_member

    assert client.post("/contacts/suggestions/refresh/").status_code == 302  # to the log-in page
    assert not MergeSuggestion.objects.exists()
    client.force_login(make_member(owned, "sam"))
    assert client.get("/contacts/suggestions/refresh/").status_code == 405  # a write: POST only
    page = client.post("/contacts/suggestions/refresh/", follow=True)
    assert page.redirect_chain == [("/contacts/suggestions/", 302)]
    row = MergeSuggestion.objects.get(workspace=owned, state="open")
    assert (row.contact_a_id, row.contact_b_id) == pair_of(*namesakes)
    html = page.content.decode()
    assert "1 suggestion open (1 new)." in html and "same name" in html
    again = client.post("/contacts/suggestions/refresh/", follow=True).content.decode()
    assert "1 suggestion open (0 new)." in again and MergeSuggestion.objects.count() == 1


def test_the_benchmark_plant_is_deterministic_and_its_count_is_honest(db):
    from bench.linking_bench import plant, run

    first, again = plant(contacts=400, seed=3), plant(contacts=400, seed=3)
    assert [i.payload for i in first.items] == [i.payload for i in again.items]
    result = run(contacts=400, seed=3)
    assert result["contacts"] == 400 and result["activities"] == 400
    assert result["true_positives"] + result["false_positives"] == result["suggested"]
    # Initials alone stay under the threshold by design; every other planted kind is found.
    found = {kind: tuple(map(int, v.split("/"))) for kind, v in result["found_by_planted_kind"].items()}
    assert found["initials"][0] == 0 and all(n == total for kind, (n, total) in found.items() if kind != "initials")


def test_the_daily_task_refreshes_every_workspace(owned, namesakes, settings):
    from streams.tasks import merge_suggestions_refresh as task

    assert settings.CELERY_BEAT_SCHEDULE["merge-suggestions"]["task"] == "streams.tasks.merge_suggestions_refresh"
    assert task.delay().get() == 1
    assert MergeSuggestion.objects.filter(workspace=owned, state="open").count() == 1
