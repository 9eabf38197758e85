"""A fake Twilio REST API at the HTTP boundary (tests/test_twilio_fake.py checks that it answers
like Twilio's docs say), and webhook requests signed as Twilio signs them.

``FakeTwilio`` is a ``requests`` transport adapter: the real ``twilio.rest.Client`` builds real
HTTP requests (Basic auth, query strings, form bodies), and the adapter answers them with
responses shaped like the Messages API's (resources with ``sid``, ``account_sid``, ``from``,
``to``, ``body``, ``status``, ``direction``, RFC 2822 ``date_*``, ``num_media``,
``num_segments``, ``error_code``, ``price``, ``uri``, ``subresource_uris``; pages with
``messages``, ``next_page_uri``, ``page``, ``page_size``, ``first_page_uri``,
``previous_page_uri``, ``uri``). It is installed with ``install_fake_twilio`` at
``connectors.http.session``, the one outbound-HTTP seam; nothing inside Mesh is replaced.

Date filters follow the documented behaviour: ``DateSent>=``/``DateSent<=`` compare **dates**
(YYYY-MM-DD), so a listing from "10:30:00" returns the whole day and the client must do the
rest. Messages are listed newest first; paging is by ``PageToken`` as Twilio does.
"""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import itertools
import json
from pathlib import Path
from urllib.parse import parse_qs, urlencode, urlparse

import requests
from requests.adapters import BaseAdapter
from twilio.request_validator import RequestValidator

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "twilio_sms"
ACCOUNT = "AC0123456789abcdef0123456789abcdef"
TOKEN = "0123456789abcdef0123456789abcdef"
API = "https://api.twilio.com"


def fixture(name: str):
    return json.loads((FIXTURES / f"{name}.json").read_text())  # fails fast on invalid JSON


def rfc2822(value: dt.datetime) -> str:
    return email.utils.format_datetime(value.astimezone(dt.UTC), usegmt=False).replace("-0000", "+0000")


class FakeTwilio(BaseAdapter):
    def __init__(self, *, account_sid: str = ACCOUNT, auth_token: str = TOKEN, messages=()):
        super().__init__()
        self.account_sid = account_sid
        self.auth_token = auth_token
        self.messages: list[dict] = [self.resource(m) for m in messages]
        self.requests: list[requests.PreparedRequest] = []
        self.refuse: dict | None = None  # {"status", "code", "message"}: the next create fails
        self._sids = itertools.count(0x1000)

    # -- resources --------------------------------------------------------------------------
    def resource(self, m: dict) -> dict:
        account = m.get("account_sid", self.account_sid)
        sid = m["sid"]
        full = {
            "account_sid": account, "api_version": "2010-04-01", "body": m.get("body", ""),
            "date_created": m.get("date_created", m.get("date_sent")), "date_sent": m.get("date_sent"),
            "date_updated": m.get("date_updated", m.get("date_sent")), "direction": m["direction"],
            "error_code": m.get("error_code"), "error_message": m.get("error_message"), "from": m["from"],
            "messaging_service_sid": m.get("messaging_service_sid"), "num_media": m.get("num_media", "0"),
            "num_segments": m.get("num_segments", "1"), "price": m.get("price"), "price_unit": "USD",
            "sid": sid, "status": m["status"], "to": m["to"],
            "subresource_uris": {
                "media": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Media.json",
                "feedback": f"/2010-04-01/Accounts/{account}/Messages/{sid}/Feedback.json",
            },
            "uri": f"/2010-04-01/Accounts/{account}/Messages/{sid}.json",
        }
        return full

    def add(self, **m) -> dict:
        r = self.resource(m)
        self.messages.append(r)
        return r

    # -- HTTP -------------------------------------------------------------------------------
    def send(self, request, **kwargs):
        self.requests.append(request)
        url = urlparse(request.url)
        auth = request.headers.get("Authorization", "")
        expected = "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()
        if auth != expected:
            return self._json(request, 401, {"code": 20003, "message": "Authenticate", "more_info":
                                             "https://www.twilio.com/docs/errors/20003", "status": 401})
        base = f"/2010-04-01/Accounts/{self.account_sid}/Messages.json"
        if url.path != base:
            return self._json(request, 404, {"code": 20404, "message": "The requested resource was not found",
                                             "more_info": "https://www.twilio.com/docs/errors/20404", "status": 404})
        if request.method == "GET":
            return self._json(request, 200, self._page(base, parse_qs(url.query)))
        if request.method == "POST":
            return self._create(request, parse_qs(request.body if isinstance(request.body, str) else (request.body or b"").decode()))
        return self._json(request, 405, {"code": 20004, "message": "Method not allowed", "status": 405})

    def close(self):
        pass

    def _json(self, request, status: int, body: dict):
        response = requests.Response()
        response.status_code = status
        response._content = json.dumps(body).encode()
        response.headers["Content-Type"] = "application/json"
        response.url = request.url
        response.request = request
        response.encoding = "utf-8"
        return response

    def _page(self, base: str, q: dict) -> dict:
        def one(name, default=None):
            return q.get(name, [default])[0]

        def day(value):
            return dt.date.fromisoformat(value[:10]) if value else None

        after, before = day(one("DateSent>")), day(one("DateSent<"))
        rows = []
        for m in self.messages:
            sent = email.utils.parsedate_to_datetime(m["date_sent"]) if m["date_sent"] else None
            if (after or before) and sent is None:
                continue
            if after and sent.date() < after:
                continue
            if before and sent.date() > before:
                continue
            if one("To") and m["to"] != one("To"):
                continue
            if one("From") and m["from"] != one("From"):
                continue
            rows.append((sent or dt.datetime.max.replace(tzinfo=dt.UTC), m))
        rows.sort(key=lambda r: (r[0], r[1]["sid"]), reverse=True)  # newest first
        size = int(one("PageSize", "50"))
        page = int(one("Page", "0"))
        token = one("PageToken")
        start = 0
        if token:
            start = next((i + 1 for i, (_, m) in enumerate(rows) if "PA" + m["sid"] == token), len(rows))
        chunk = [m for _, m in rows[start : start + size]]
        params = {k: v[0] for k, v in q.items() if k not in ("Page", "PageToken")}
        params["PageSize"] = size

        def uri(**extra):
            return f"{base}?{urlencode({**params, **extra})}"

        more = start + size < len(rows)
        return {
            "end": start + len(chunk) - 1, "first_page_uri": uri(Page=0), "messages": chunk,
            "next_page_uri": uri(Page=page + 1, PageToken="PA" + chunk[-1]["sid"]) if more and chunk else None,
            "page": page, "page_size": size, "previous_page_uri": uri(Page=page - 1) if page else None,
            "start": start, "uri": uri(Page=page) if page else uri(),
        }

    def _create(self, request, form: dict):
        def one(name):
            return form.get(name, [None])[0]

        if self.refuse:
            r, self.refuse = self.refuse, None
            return self._json(request, r.get("status", 400), {
                "code": r["code"], "message": r["message"], "more_info": f"https://www.twilio.com/docs/errors/{r['code']}",
                "status": r.get("status", 400)})
        now = rfc2822(dt.datetime.now(dt.UTC))
        sid = f"SM{next(self._sids):032x}"
        m = self.add(sid=sid, direction="outbound-api", status="queued", body=one("Body") or "",
                     to=one("To"), date_created=now, date_updated=now, date_sent=None,
                     **{"from": one("From")})
        m["_status_callback"] = one("StatusCallback")  # what Twilio would call back (not in the JSON below)
        body = {k: v for k, v in m.items() if not k.startswith("_")}
        return self._json(request, 201, body)


def install_fake_twilio(monkeypatch, fake: FakeTwilio) -> FakeTwilio:
    """Point Mesh's outbound-HTTP seam at the fake for https://api.twilio.com."""
    from connectors import http

    original = http.session

    def session():
        s = original()
        s.mount(API + "/", fake)
        return s

    monkeypatch.setattr(http, "session", session)
    return fake


def history_fake(**kwargs) -> FakeTwilio:
    return FakeTwilio(messages=fixture("messages__history"), **kwargs)


OURS = "+14155550199"
TWILIO_CONFIG = {"account_sid": ACCOUNT, "numbers": f"{OURS},+14155550198"}


def sign(url: str, params: dict, token: str = TOKEN) -> str:
    return RequestValidator(token).compute_signature(url, params)


def post_signed(client, path: str, params: dict, *, token: str = TOKEN, host: str = "testserver", signature=None, **headers):
    url = f"http://{host}{path}"
    if signature is None:
        signature = sign(url, params, token)
    if signature:
        headers["HTTP_X_TWILIO_SIGNATURE"] = signature
    return client.post(path, params, HTTP_HOST=host, **headers)
