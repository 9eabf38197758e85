"""The naive reader (issue 15, point 7): a page in headless Chromium that fetches each feed,
parses it (DOMParser for RSS and Atom, JSON.parse for JSON Feed and AS2) and puts every parsed
field — every element's text, every attribute, every JSON string — into ``innerHTML``. No
payload may run (a flag the payloads set stays unset, no dialog opens) and the text shown is
the intended one. The page has no CSP, so that it shows what a careless reader would run.

Chromium from Debian's package, driven by Playwright (tests/fakes/browser.py)."""

from __future__ import annotations

import pytest

from connectors.base import RawItem
from connectors.device.connector import DeviceConnector
from streams.feed_tokens import feed_token_create
from streams.identity import identity_mark_self
from streams.ingest import ingest_batch
from streams.places import device_places_public_set
from tests.factories import ANA_EMAIL, ME_EMAIL, ana, ingest_mail, mail, make_event
from tests.fakes.browser import headless_chromium
from tests.fakes.readers import FORMATS, feed_url

pytestmark = pytest.mark.django_db(transaction=True)

# Each payload sets window.__pwned (or opens a dialog) if it ever runs as markup.
NAME = "O'Brien & \"Sons\" <img src=x onerror=alert(1)> Zoë 東京"
SUBJECT = "Who's \"there\" & <img src=x onerror=\"window.__pwned='subject'\"> café"
TEXT = "<svg onload=\"window.__pwned='text'\"></svg> a < b && c > d"
HTML = '<p>Hi</p><img src=x onerror="window.__pwned=\'html\'"><a href="javascript:window.__pwned=1">x</a>'
DEVICE_NAME = "Pixel <img src=x onerror=\"window.__pwned='device'\">"
WORKSPACE_NAME = "Acme <img src=x onerror=\"window.__pwned='workspace'\">"
ATTACHMENT = {"name": "<img src=x onerror=\"window.__pwned='attachment'\">.pdf", "type": "application/pdf",
              "size": 10, "url": "https://files.example/q.pdf"}

HARNESS = """<!doctype html><meta charset="utf-8"><body><script>
window.fields = [];
function sink(path, value) {            // the careless reader: every field as HTML
  const div = document.createElement("div");
  div.innerHTML = value;
  document.body.appendChild(div);
  window.fields.push([path, div.textContent]);
}
function walkXml(node, path) {
  for (const attr of node.attributes || []) sink(path + "@" + attr.localName, attr.value);
  const children = [...node.children];
  if (!children.length) sink(path, node.textContent);
  for (const child of children) walkXml(child, path + "/" + child.localName);
}
function walkJson(value, path) {
  if (typeof value === "string") sink(path, value);
  else if (value && typeof value === "object")
    for (const [k, v] of Object.entries(value)) walkJson(v, path + "/" + (Array.isArray(value) ? "0" : k));
}
// The control: a title escaped once, as channel titles were, is markup again once parsed.
const CONTROL = '<rss><channel><title>&lt;img src=x onerror="window.__control=1"&gt;</title></channel></rss>';
window.read = async (urls) => {
  walkXml(new DOMParser().parseFromString(CONTROL, "application/xml").documentElement, "control");
  for (const url of urls) {
    const text = await (await fetch(url)).text();
    const tag = url.split("/").pop().split(".").pop();
    if (tag === "json" || tag === "as2") walkJson(JSON.parse(text), tag);
    else walkXml(new DOMParser().parseFromString(text, "application/xml").documentElement, tag);
  }
};
</script>"""


def shown(text: str) -> str:
    return text.replace("<", "\u2039").replace(">", "\u203a")


@pytest.fixture
def hostile_feeds(workspace, device):
    """A full-tier contact feed, a device feed and the lifestream, every name and text hostile."""
    workspace.name = WORKSPACE_NAME
    workspace.save(update_fields=["name"])
    identity_mark_self(workspace=workspace, kind="email", value=ME_EMAIL["value"])
    ingest_mail(workspace, [
        mail(1, subject=SUBJECT, text=TEXT, participants=[{**ANA_EMAIL, "display": NAME}, ME_EMAIL]),
        mail(2, subject=SUBJECT, text="", html=HTML, attachments=[ATTACHMENT], visibility="public", day=2,
             direction="out", participants=[{**ME_EMAIL, "role": "from"}, {**ANA_EMAIL, "display": NAME, "role": "to"}]),
    ])
    contact = ana(workspace)
    contact.name = NAME
    contact.save(update_fields=["name"])
    device.name = DEVICE_NAME
    device.save(update_fields=["name"])
    device_places_public_set(device=device, public=True)  # its public location reaches the lifestream too
    connector = DeviceConnector({}, {}, context={"device_id": device.pk, "region": workspace.region})
    event = make_event("<img src=x onerror=\"window.__pwned='guid'\">", type="location", visibility="public",
                       data={"text": TEXT, "title": SUBJECT})
    ingest_batch(workspace=workspace, connector=connector, device=device,
                 items=[RawItem(f"{device.pk}/{event['id']}", event)])
    _row, contact_token = feed_token_create(workspace=workspace, contact=contact, tier="full")
    _row, device_token = feed_token_create(workspace=workspace, device=device, tier="full")
    return ([feed_url(contact_token, fmt) for fmt in FORMATS] + [feed_url(device_token, fmt) for fmt in FORMATS]
            + [f"/@{workspace.slug}/feed.{fmt}" for fmt in FORMATS])


def test_a_reader_that_renders_every_field_as_html_runs_nothing_and_shows_the_text(live_server, hostile_feeds,
                                                                                   monkeypatch):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # Playwright's loop runs in this thread
    harness_url = live_server.url + "/__naive_reader__"
    dialogs: list[str] = []
    with headless_chromium() as browser:
        page = browser.new_page()
        page.set_default_timeout(15_000)
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        # The page is served at the live server's origin, so that it may fetch the feeds.
        page.route(harness_url, lambda route: route.fulfill(status=200, content_type="text/html", body=HARNESS))
        page.goto(harness_url)
        page.evaluate("urls => window.read(urls)", hostile_feeds)
        page.wait_for_function("window.__control === 1")  # a payload that runs is seen
        page.wait_for_load_state("networkidle")
        page.wait_for_timeout(500)
        pwned = page.evaluate("window.__pwned")
        fields = page.evaluate("window.fields")
    assert pwned is None and dialogs == []
    texts: dict[str, list[str]] = {}
    for path, text in fields:
        texts.setdefault(path, []).append(text)
    workspace = shown(WORKSPACE_NAME)
    expected = {
        "rss/channel/title": [f"{shown(NAME)} — {workspace}", f"{shown(DEVICE_NAME)} (device) — {workspace}",
                              f"{workspace} — lifestream"],
        "rss/channel/description": [f"Activity with {shown(NAME)} in Mesh (full feed).",
                                    f"Activity with {shown(DEVICE_NAME)} in Mesh (full feed).",
                                    f"Public activity of {workspace}."],
        "atom/entry/title": [f"Email to {shown(NAME)}: {shown(SUBJECT)}", f"Email from {shown(NAME)}: {shown(SUBJECT)}",
                             f"Location: {shown(SUBJECT)}", f"Location: {shown(SUBJECT)}",
                             f"Email sent: {shown(SUBJECT)}"],
        "json/items/0/title": [f"Email to {shown(NAME)}: {shown(SUBJECT)}",
                               f"Email from {shown(NAME)}: {shown(SUBJECT)}", f"Location: {shown(SUBJECT)}",
                               f"Location: {shown(SUBJECT)}", f"Email sent: {shown(SUBJECT)}"],
        "as2/orderedItems/0/summary": [shown(SUBJECT)] * 5,  # an HTML field renders to the text
        # The HTML mail's text is its HTML's text (nh3 keeps the link's "x").
        "json/items/0/content_text": [shown(TEXT)] * 3 + ["Hix"] * 2,
    }
    for path, want in expected.items():
        assert sorted(texts[path]) == sorted(want), path
    assert texts["rss/channel/item/title"][0] == f"Email to {shown(NAME)}: {shown(SUBJECT)}"
    assert shown(NAME) in texts["json/items/0/authors/0/name"]
    assert "Hi" in texts["rss/channel/item/description"][0]  # sanitized HTML renders

