"""The pages by keyboard alone, in headless Chromium against the demo data: the skip link, the
timeline (j / k from item to item, Tab into an item's own actions, "Older" reached and loaded)
and the merge flow (find, preview, confirm). After the setup every step is a key press."""

from __future__ import annotations

import pytest

from tests.fakes.a11y import focused, load_demo, tab_to
from tests.fakes.browser import module_chromium

PASSWORD = "keyboard-demo-password"

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(scope="module")
def browser():
    with module_chromium() as browser:
        yield browser


@pytest.fixture
def ana(browser, settings):
    settings.MESH_PAGE_SIZE = 20  # so that Ana's timeline has an older page
    return load_demo(workspace="demo", username="keys", password=PASSWORD)


@pytest.fixture
def page(browser, live_server, ana):
    """A page in a browser context of its own, logged in by keyboard."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(f"{live_server.url}/accounts/login/")
    tab_to(page, "#id_username")
    page.keyboard.type("keys")
    page.keyboard.press("Tab")
    page.keyboard.type(PASSWORD)
    page.keyboard.press("Enter")
    page.wait_for_url(f"{live_server.url}/contacts/")
    yield page
    context.close()  # stop the live poll before the server goes away


def active_id(page) -> str:
    return page.evaluate("document.activeElement.id")


def test_the_first_tab_stop_skips_to_the_content(page, live_server, ana):
    page.goto(f"{live_server.url}/contacts/{ana.pk}/")
    page.keyboard.press("Tab")
    assert focused(page, "a.skip-link") and page.locator("a.skip-link").is_visible()
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    # The next stop is inside the page's content, past the header's links.
    assert page.evaluate("document.querySelector('main').contains(document.activeElement)")
    assert not page.evaluate("document.querySelector('header.site-header').contains(document.activeElement)")


def test_j_and_k_move_through_the_timeline_and_j_reaches_older_items(page, live_server, ana):
    page.goto(f"{live_server.url}/contacts/{ana.pk}/")
    items = page.locator("section.timeline article.activity").evaluate_all("els => els.map(e => e.id)")
    assert len(items) == 20

    page.keyboard.press("j")
    assert active_id(page) == items[0]
    page.keyboard.press("j")
    assert active_id(page) == items[1]
    page.keyboard.press("k")
    assert active_id(page) == items[0]
    page.keyboard.press("k")  # the first item stays put
    assert active_id(page) == items[0]

    # Tab from an item goes into that item's own actions (links, disclosures) first.
    with_actions = page.locator("section.timeline article.activity").evaluate_all(
        "els => els.filter(e => e.querySelector('a[href], summary, button')).map(e => e.id)")
    assert with_actions, "the demo contact has items with links or disclosures"
    target = items.index(with_actions[0])
    for _ in range(target):
        page.keyboard.press("j")
    assert active_id(page) == items[target]
    page.keyboard.press("Tab")
    assert page.evaluate("(id) => document.getElementById(id).contains(document.activeElement)", items[target])

    # After the last item, j reaches "Older"; Enter loads the older items and focuses the first.
    page.keyboard.press("k")  # from the action back to an item
    for _ in range(len(items) + 2):
        page.keyboard.press("j")
    assert focused(page, "nav.pager a.older")
    page.keyboard.press("Enter")
    page.locator("section.timeline article.activity").nth(len(items)).wait_for()
    shown = page.locator("section.timeline article.activity").evaluate_all("els => els.map(e => e.id)")
    assert shown[:len(items)] == items and len(shown) > len(items)
    page.wait_for_function("(id) => document.activeElement && document.activeElement.id === id", arg=shown[len(items)])
    page.keyboard.press("j")
    assert active_id(page) == shown[len(items) + 1]
    page.keyboard.press("k")
    page.keyboard.press("k")
    assert active_id(page) == items[-1]


def test_j_and_k_are_letters_while_typing(page, live_server, ana):
    page.goto(f"{live_server.url}/contacts/{ana.pk}/")
    tab_to(page, "form.filters input[name=q]")
    page.keyboard.type("jk")
    assert focused(page, "form.filters input[name=q]")
    assert page.input_value("form.filters input[name=q]") == "jk"


def test_the_merge_flow_by_keyboard_alone(page, live_server, ana):
    from streams.models import Contact

    other = (Contact.objects.filter(workspace=ana.workspace, merged_into=None, is_self=False)
             .exclude(pk=ana.pk).exclude(name="").order_by("-last_activity_at").first())
    page.goto(f"{live_server.url}/contacts/{ana.pk}/")

    tab_to(page, f'a[href="/contacts/{ana.pk}/merge/"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/contacts/{ana.pk}/merge/")
    tab_to(page, "#merge-q")
    page.keyboard.type(other.name)
    page.keyboard.press("Enter")
    page.wait_for_url("**/merge/?q=**")

    tab_to(page, f'a[href$="/merge/?other={other.pk}"]')
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/merge/?other={other.pk}")
    assert "What moves" in page.inner_text("main")

    # The survivor is chosen in the preview; the one this page is about stays unless changed.
    assert page.locator("input[name=into]:checked").get_attribute("value") == str(ana.pk)
    tab_to(page, ".merge-preview button.primary")
    page.keyboard.press("Enter")
    page.wait_for_url(f"**/contacts/{ana.pk}/")
    assert "Merged" in page.inner_text(".messages")
    other.refresh_from_db()
    assert other.merged_into_id == ana.pk
