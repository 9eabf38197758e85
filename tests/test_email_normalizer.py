"""The shared email normalizer on the fixture corpus (tests/fixtures/email/): one test per kind
of real-world mess. Pure: no database, no server."""

from __future__ import annotations

import base64
import datetime as dt
import os
from pathlib import Path

import pytest

from connectors.base import BadItem
from connectors.email_common import email_draft, pack, thread_subject, unpack

FIXTURES = Path(__file__).parent / "fixtures" / "email"
ME = {"me@mesh.example"}


def draft(name: str, **meta):
    d = email_draft((FIXTURES / f"{name}.eml").read_bytes(), meta=meta, self_addresses=ME)
    d.validate()
    return d


def people(d, role=None):
    return [(p.role, p.value, p.display) for p in d.participants if role is None or p.role == role]


def test_encoded_words_in_several_charsets_are_decoded():
    d = draft("encoded_words__several_charsets")
    # Split UTF-8 words are joined before decoding; ISO-8859-15 gives the euro sign.
    assert d.subject == "Réunion — café and €uro"
    assert people(d) == [
        ("from", "andre@example.de", "André Müller"),
        ("to", "taro@example.jp", "山田太郎"),
        ("to", "ivan@example.ru", "Иван"),
        ("cc", "francois@example.fr", "François"),
    ]
    assert d.text == "Bonjour à tous,\non se voit au café.\n"
    assert d.occurred_at == dt.datetime(2026, 5, 5, 9, 0, tzinfo=dt.UTC)


def test_utf8_body_declared_ascii_is_read_as_utf8():
    d = draft("wrong_charset__utf8_declared_ascii")
    assert d.text.strip() == "Viele Grüße aus Köln — bis bald!"
    assert d.subject == "Grüße aus Köln"  # raw 8-bit UTF-8 header
    assert people(d, "from") == [("from", "juergen@example.de", "Jürgen Beispiel")]


def test_latin1_body_declared_utf8_falls_back_without_replacement_characters():
    d = draft("wrong_charset__latin1_declared_utf8")
    assert d.text.strip() == "Segue o orçamento. Até já!"
    assert d.subject == "Orçamento"
    assert "\ufffd" not in d.text + d.subject


def test_8bit_headers_in_utf8_and_latin1_are_decoded():
    d = draft("headers_8bit__raw_utf8_and_latin1")
    assert people(d, "from") == [("from", "chloe@example.fr", "Chloé Martin")]
    assert d.subject == "Déjà vu, naïve café"
    assert d.text.strip() == "Très bien."


def test_missing_date_falls_back_to_internaldate_then_newest_received():
    with_internal = draft("missing_date", internaldate="2026-05-08T11:20:00+00:00")
    assert with_internal.occurred_at == dt.datetime(2026, 5, 8, 11, 20, tzinfo=dt.UTC)
    assert with_internal.extra["date_source"] == "internaldate"
    without = draft("missing_date")
    assert without.occurred_at == dt.datetime(2026, 5, 8, 11, 15, tzinfo=dt.UTC)  # newest Received, in UTC
    assert without.extra["date_source"] == "received"


def test_far_future_date_is_absurd_and_replaced_by_arrival_time():
    d = draft("absurd_date__far_future")
    assert d.occurred_at == dt.datetime(2026, 5, 10, 6, 0, tzinfo=dt.UTC)
    assert d.extra["date_source"] == "received"
    assert d.extra["date_header"] == "Fri, 01 Jan 2100 00:00:00 +0000"


def test_date_before_1980_is_absurd():
    data = (FIXTURES / "reply_chain__1.eml").read_bytes().replace(b"Tue, 19 May 2026", b"Thu, 01 Jan 1970")
    d = email_draft(data, meta={"internaldate": "2026-05-19T11:00:05+00:00"})
    assert d.occurred_at == dt.datetime(2026, 5, 19, 11, 0, 5, tzinfo=dt.UTC)


def test_missing_message_id_gives_a_stable_content_hash():
    d = draft("missing_message_id")
    assert d.dedup_key.startswith("email:content:")
    # The same mail with other transport headers (another copy of it) hashes the same.
    data = (FIXTURES / "missing_message_id.eml").read_bytes()
    copy = b"Received: from mx by mx.mesh.example; Sat, 09 May 2026 12:00:01 +0000\r\n" + data
    assert email_draft(copy).dedup_key == d.dedup_key
    other = data.replace(b"no message id", b"another subject")
    assert email_draft(other).dedup_key != d.dedup_key
    assert d.thread_key == d.dedup_key
    assert d.extra["missing_headers"] == ["message-id"]


def test_script_mail_with_the_same_headers_and_no_date_or_message_id_stays_two_messages():
    a = draft("no_message_id__script_a", internaldate="2026-05-13T02:00:00+00:00")
    b = draft("no_message_id__script_b", internaldate="2026-05-13T02:00:00+00:00")
    assert (a.subject, a.participants) == (b.subject, b.participants)
    assert a.dedup_key != b.dedup_key
    assert a.extra["missing_headers"] == b.extra["missing_headers"] == ["date", "message-id"]


def test_imap_saved_and_mbox_copies_of_one_message_without_message_id_have_one_key():
    from connectors.mbox.connector import read_mbox

    imap = draft("no_message_id__copy_imap")
    saved = draft("no_message_id__copy_saved", mtime="2026-05-14T08:00:00+00:00")
    with open(FIXTURES / "no_message_id__copy.mbox", "rb") as fh:
        [(_from_line, mboxed, _end)] = list(read_mbox(fh))
    from_mbox = email_draft(mboxed, meta={"mbox_date": "2026-05-13T02:00:03+00:00"})
    # The copies differ in line endings, transport and status headers, trailing whitespace,
    # blank lines at the end and ">From " quoting; the key does not.
    assert len({imap.dedup_key, saved.dedup_key, from_mbox.dedup_key}) == 1
    assert imap.dedup_key.startswith("email:content:")
    assert "From the logs" in from_mbox.text


def test_a_message_without_any_header_imports_with_its_arrival_time_and_an_unknown_sender():
    d = draft("headerless__body_only", internaldate="2026-05-15T07:30:00+00:00")
    assert d.occurred_at == dt.datetime(2026, 5, 15, 7, 30, tzinfo=dt.UTC)
    assert (d.participants, d.direction, d.subject) == ([], None, "")
    assert d.text == "Call the plumber about the boiler before Friday.\nNumber is on the fridge.\n"
    assert d.extra["missing_headers"] == ["from", "to", "date", "subject", "message-id"]
    assert d.extra["date_source"] == "internaldate"
    assert d.dedup_key.startswith("email:content:")
    # A lone file has its modification time; an mbox message its "From " line.
    assert draft("headerless__body_only", mtime="2026-05-01T09:00:00+00:00").extra["date_source"] == "file"
    assert draft("headerless__body_only", mbox_date="2026-05-02T09:00:00+00:00").extra["date_source"] == "mbox"


def test_message_id_is_the_dedup_key_whichever_copy():
    d = draft("reply_chain__1")
    assert d.dedup_key == "email:chain-1@example.com"
    assert email_draft(b"X-Folder: Sent\r\n" + (FIXTURES / "reply_chain__1.eml").read_bytes()).dedup_key == d.dedup_key


def test_multipart_alternative_with_inline_image_maps_cid_to_attachment():
    d = draft("alternative__inline_images")
    assert d.text.startswith("Here is the floor plan")
    assert 'src="cid:plan@example.com"' in d.html
    assert "cdn.example.com" not in d.html  # remote image blocked
    assert d.attachments == [
        {"name": "plan.png", "type": "image/png", "size": 66, "content_id": "plan@example.com", "inline": True}
    ]
    assert d.extra["remote_images_blocked"] == 1 and d.extra["inline_images"] == 1


def test_ten_megabyte_attachment_is_metadata_only():
    payload = os.urandom(10 * 1024 * 1024)
    body = base64.encodebytes(payload)
    data = (
        b"From: Ana Souza <ana@example.com>\r\nTo: me@mesh.example\r\nSubject: big file\r\n"
        b"Date: Mon, 01 Jun 2026 10:00:00 +0000\r\nMessage-ID: <big-1@example.com>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/mixed; boundary="B"\r\n\r\n--B\r\nContent-Type: text/plain\r\n\r\nSee attached.\r\n'
        b'--B\r\nContent-Type: application/octet-stream; name="data.bin"\r\n'
        b'Content-Disposition: attachment; filename="data.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n'
        + body + b"--B--\r\n"
    )
    d = email_draft(data, self_addresses=ME)
    assert d.attachments == [{"name": "data.bin", "type": "application/octet-stream", "size": len(payload),
                              "content_id": "", "inline": False}]
    assert d.text.strip() == "See attached."
    assert d.extra["size"] == len(data)
    stored = pack(data)
    assert len(stored["rfc822_zb64"]) < len(data) * 1.4 and unpack(stored) == data


def test_calendar_invite_is_read():
    d = draft("calendar_invite")
    assert d.extra["calendar"] == {
        "method": "REQUEST", "uid": "qr-2026-05@example.jp", "summary": "Quarterly review",
        "dtstart": "20260519T100000Z", "dtend": "20260519T110000Z", "location": "Room 4, second floor",
        "organizer": "mailto:goro@example.jp",
    }
    assert [a["type"] for a in d.attachments] == ["text/calendar", "application/ics"]
    assert not d.automated


def test_bounce_dsn_is_automated_with_its_status():
    d = draft("bounce__dsn")
    assert d.automated
    assert "delivery status notification" in d.extra["automated_reasons"]
    assert d.extra["dsn"]["status"] == "5.1.1" and d.extra["dsn"]["action"] == "failed"
    assert d.extra["dsn"]["final_recipient"] == "rfc822; nobody@example.invalid"


def test_mailing_list_mail_is_automated_with_sender_and_reply_to():
    d = draft("mailing_list")
    assert d.automated
    assert {"list-id", "list-unsubscribe", "precedence: list"} <= set(d.extra["automated_reasons"])
    assert d.extra["list_id"] == "Developers <dev.lists.example.org>"
    assert people(d) == [
        ("from", "hana@example.cz", "Hana Novak"),
        ("sender", "dev-bounces@lists.example.org", ""),
        ("reply_to", "dev@lists.example.org", ""),
        ("to", "dev@lists.example.org", ""),
    ]
    assert d.extra["thread_subject"] == "Release 2.0 plan"


def test_html_only_newsletter_is_sanitized_and_tracking_counted():
    d = draft("newsletter__html_only_tracking")
    assert d.automated and "no-reply sender" in d.extra["automated_reasons"]
    for bad in ("<script", "onload", "onclick", "javascript:", "evil.example", "t.example.com", "url(", "<style"):
        assert bad not in d.html
    assert '<a href="https://news.example.com/c?id=1" rel="noopener noreferrer nofollow">everything</a>' in d.html
    assert d.extra["remote_images_blocked"] == 2 and d.extra["tracking_pixels"] == 1
    assert d.text == "Big deals\n\n50% off everything\n\nclick"
    assert "document.location" not in d.text


def test_auto_reply_is_automated():
    d = draft("auto_reply__out_of_office")
    assert d.automated
    assert d.extra["automated_reasons"] == ["auto-submitted: auto-replied", "x-autoreply", "auto-reply subject"]


def test_unparseable_addresses_are_kept_aside_not_fatal():
    d = draft("unparseable_addresses")
    assert people(d) == [("from", "ana@example.com", "Ana Souza"), ("to", "me@mesh.example", "")]
    assert d.extra["unparseable_addresses"] == [{"role": "to", "value": "Broken <not an address>"}]


def test_sent_mail_is_out_and_snippet_drops_signature_and_quote():
    d = draft("sent__by_me_with_signature")
    assert (d.direction, d.verb) == ("out", "send")
    assert d.extra["snippet"] == "Thanks Ana, looks good."
    assert "Segue o orçamento" in d.text  # the body itself is whole
    assert d.thread_key == "email:wrong-charset-2@example.com"


def test_reply_chain_of_five_is_one_thread():
    drafts = [draft(f"reply_chain__{n}") for n in range(1, 6)]
    assert {d.thread_key for d in drafts} == {"email:chain-1@example.com"}
    assert [d.direction for d in drafts] == ["in", "out", "in", "out", "in"]
    assert {d.extra["thread_subject"] for d in drafts} == {"Contract renewal"}
    assert [d.extra["snippet"] for d in drafts] == [f"Message {n} of the chain." for n in range(1, 6)]
    assert drafts[4].extra["references"][0] == "chain-1@example.com"


def test_input_that_holds_no_message_at_all_is_a_bad_item():
    with pytest.raises(BadItem, match="not an email"):
        draft("not_an_email", internaldate="2026-05-01T00:00:00Z")  # binary data with no header
    for nothing in (b"", b"\r\n\r\n", b" \t\n"):
        with pytest.raises(BadItem, match="empty"):
            email_draft(nothing, meta={"internaldate": "2026-05-01T00:00:00Z"})


def test_normalizing_is_pure():
    data = (FIXTURES / "newsletter__html_only_tracking.eml").read_bytes()
    assert email_draft(data, self_addresses=ME).as_dict() == email_draft(data, self_addresses=ME).as_dict()


@pytest.mark.parametrize("subject,expected", [
    ("Re: Fwd: hello", "hello"), ("AW: SV: RE[2]: hello", "hello"), ("[dev] Re: plan", "plan"),
    ("Fw: Re:hello", "hello"), ("Reunion", "Reunion"),
])
def test_thread_subject_ignores_reply_prefixes(subject, expected):
    assert thread_subject(subject) == expected


def test_garbage_headers_never_crash():
    data = (b"From: =?x-unknown?q?=FF=FE?= <a@example.com>\r\nSubject: =?utf-8?b?!!!notbase64?= \xff\xfe\x00\r\n"
            b"To: ,,,<>,\r\nDate: yesterday\r\nMessage-ID: <x@example.com>\r\nContent-Type: text/plain; charset=bogus\r\n"
            b"\r\n\xff\xfe body\x00\r\n")
    d = email_draft(data, meta={"internaldate": "2026-05-01T00:00:00Z"})
    d.validate()
    assert "\x00" not in d.subject + d.text
    assert d.occurred_at == dt.datetime(2026, 5, 1, tzinfo=dt.UTC)
    assert d.dedup_key == "email:x@example.com"


def test_a_stray_mbox_separator_line_before_the_headers_is_skipped():
    data = b"From ana@example.com Tue May 19 11:00:00 2026\r\n" + (FIXTURES / "reply_chain__1.eml").read_bytes()
    d = email_draft(data, self_addresses=ME)
    assert (d.dedup_key, d.subject) == ("email:chain-1@example.com", "Contract renewal")


def test_fuzzed_messages_import_or_fail_cleanly():
    import json
    import random

    rng = random.Random(3)
    corpus = [p.read_bytes() for p in sorted(FIXTURES.glob("*.eml"))]
    for _ in range(300):
        data = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 20)):
            data[rng.randrange(len(data))] = rng.randrange(256)
        data = data[: rng.randint(1, len(data))]
        try:
            d = email_draft(bytes(data), meta={"internaldate": "2026-05-01T00:00:00Z"})
        except BadItem:
            continue
        d.validate()
        json.dumps(d.as_dict())
        assert "\x00" not in d.subject + d.text + d.html
