"""The fake Twilio REST API (tests/fakes/twilio.py) answers like Twilio's docs say: pages shaped
like the Messages API's and paged by token, date filters by whole days, error 20003 for a wrong
token."""

from __future__ import annotations

import datetime as dt
import email.utils
import json

import pytest

from tests.fakes.twilio import ACCOUNT, API, TOKEN, history_fake

# -- the fake answers like the docs ------------------------------------------------------------


def test_fake_pages_are_shaped_like_the_messages_api_and_page_by_token():
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    fake = history_fake()
    http_client = TwilioHttpClient()
    http_client.session.mount(API + "/", fake)
    client = Client(ACCOUNT, TOKEN, http_client=http_client)
    page = client.messages.page(page_size=3)
    first = page._payload
    assert set(first) >= {"messages", "next_page_uri", "page", "page_size", "first_page_uri", "previous_page_uri", "uri"}
    assert [m["sid"][-1] for m in first["messages"]] == ["7", "6", "5"]  # newest first
    resource = first["messages"][0]
    assert email.utils.parsedate_to_datetime(resource["date_sent"]) == dt.datetime(2026, 5, 1, 11, 30, tzinfo=dt.UTC)
    assert resource["subresource_uris"]["media"].endswith("/Media.json")
    sids = [m.sid for m in client.messages.list(page_size=3)]
    assert len(sids) == len(set(sids)) == 7


def test_fake_filters_by_day_as_documented():
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    fake = history_fake()
    fake.add(sid="SM" + "a" * 32, direction="inbound", status="received", body="old", to="+14155550199",
             date_sent="Thu, 30 Apr 2026 23:59:59 +0000", **{"from": "+14155550100"})
    http_client = TwilioHttpClient()
    http_client.session.mount(API + "/", fake)
    client = Client(ACCOUNT, TOKEN, http_client=http_client)
    later = client.messages.list(date_sent_after=dt.datetime(2026, 5, 1, 10, 30, tzinfo=dt.UTC))
    assert len(later) == 7  # the whole day of 2026-05-01, not only from 10:30


def test_fake_refuses_a_wrong_token_with_error_20003():
    from twilio.base.exceptions import TwilioException
    from twilio.http.http_client import TwilioHttpClient
    from twilio.rest import Client

    http_client = TwilioHttpClient()
    http_client.session.mount(API + "/", history_fake())
    with pytest.raises(TwilioException) as exc:
        Client(ACCOUNT, "wrong", http_client=http_client).messages.list()
    response = exc.value.args[1]
    assert response.status_code == 401 and json.loads(response.text)["code"] == 20003
