"""A person at a browser, checking a page as an accessibility audit would: axe-core's verdict
(the build vendored in tests/vendor/axe-core/, see its fetch.sh), sideways scrolling, and the
keyboard's path through the page; and the demo data with a login, as those tests use it.

axe is added to every page of a browser context with ``with_axe`` (an init script: the pages'
CSP allows no injected script tag, and an init script needs no exception to it)."""

from __future__ import annotations

import os
from pathlib import Path

from django.core.management import call_command

AXE = Path(__file__).resolve().parent.parent / "vendor" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")

# axe's result reduced to what a failure message needs: rule, impact, help and where.
_RUN_AXE = """async ([impacts, rules]) => {
  // The email iframes hold third-party mail, not Mesh's markup; axe would wait on each.
  const options = {resultTypes: ["violations"], iframes: false};
  if (rules) options.runOnly = {type: "rule", values: rules};
  const result = await axe.run(document, options);
  return result.violations.filter(v => impacts.includes(v.impact)).map(v => ({
    id: v.id, impact: v.impact, help: v.help,
    nodes: v.nodes.slice(0, 5).map(n => n.target.join(" ") + " — " + (n.failureSummary || "").replace(/\\s+/g, " ")),
    more: Math.max(0, v.nodes.length - 5),
  }));
}"""


def with_axe(context):
    """The browser context, with axe-core loaded into each page it opens."""
    context.add_init_script(path=str(AXE))
    return context


def axe_violations(page, impacts: tuple[str, ...] = BLOCKING, rules: tuple[str, ...] | None = None) -> list[str]:
    """axe's violations of these impacts on the page as it is now, one readable line each;
    ``rules``: only these of axe's rules (all of them by default)."""
    found = page.evaluate(_RUN_AXE, [list(impacts), list(rules) if rules else None])
    return [
        f"{v['impact']} {v['id']} ({v['help']}): " + "; ".join(v["nodes"]) + (f" (+{v['more']} more)" if v["more"] else "")
        for v in found
    ]


def sideways_overflow(page) -> int:
    """How many CSS pixels the page is wider than the window (0 or less: no sideways scroll)."""
    return page.evaluate("document.documentElement.scrollWidth - document.documentElement.clientWidth")


def sticking_out(page, limit: int = 5) -> list[str]:
    """The innermost elements that reach past the window's right edge, for a failure message."""
    return page.evaluate("""(limit) => {
      const width = document.documentElement.clientWidth, out = [];
      for (const e of document.querySelectorAll("body *")) {
        if (e.getBoundingClientRect().right <= width + 0.5) continue;
        if ([...e.children].some(c => c.getBoundingClientRect().right > width + 0.5)) continue;
        const name = (n) => n.tagName.toLowerCase() + (typeof n.className === "string" && n.className.trim()
          ? "." + n.className.trim().split(/\\s+/).join(".") : "");
        out.push(name(e.parentElement) + " > " + name(e) + " right=" + Math.round(e.getBoundingClientRect().right));
        if (out.length >= limit) break;
      }
      return out;
    }""", limit)


def log_in(page, base_url: str, username: str, password: str) -> None:
    page.goto(f"{base_url}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base_url}/contacts/")


def focused(page, selector: str) -> bool:
    """Whether the element with the keyboard focus matches ``selector``."""
    return page.evaluate("(s) => !!document.activeElement && document.activeElement.matches(s)", selector)


def tab_to(page, selector: str, *, limit: int = 80, backwards: bool = False) -> int:
    """Press Tab (Shift+Tab backwards) until the focus is on an element matching ``selector``;
    the number of presses. AssertionError when it is not reached in ``limit`` presses, naming
    where the focus went."""
    path = []
    for presses in range(1, limit + 1):
        page.keyboard.press("Shift+Tab" if backwards else "Tab")
        if focused(page, selector):
            return presses
        path.append(page.evaluate(
            "() => { const e = document.activeElement; return e ? e.tagName.toLowerCase() + (e.id ? '#' + e.id : '')"
            " + ' ' + (e.innerText || e.value || e.getAttribute('aria-label') || '').trim().slice(0, 30) : '' }"))
    raise AssertionError(f"{selector} is not reached by {limit} Tab presses; the focus went: " + " → ".join(path))


# What post_migrate writes after each transactional test's flush: there before the demo is loaded.
_MIGRATE_TABLES = ("django_content_type", "auth_permission")
# Copies of the demo's rows on PostgreSQL, by load_demo's arguments: the schema that holds them.
_demo_copies: dict[tuple[str, str, str], str] = {}


def load_demo(*, workspace: str, username: str, password: str):
    """The bundled demo data (``mesh_demo``, as `make demo` loads it) in the test database,
    with a login; Ana Souza, the demo's busiest person, as her contact.

    On PostgreSQL the first load with these arguments is kept as a copy of every table's rows,
    and a later one into a database a transactional test emptied restores that copy: the same
    rows, ids included, in milliseconds instead of mesh_demo's seconds."""
    key = (workspace, username, password)
    if not _demo_copy_restored(key):
        call_command("mesh_demo", "--no-serve", "--workspace", workspace, "--username", username,
                     "--password", password, stdout=open(os.devnull, "w"), stderr=open(os.devnull, "w"))
        _demo_copy_keep(key)
    from streams.models import Identity

    ana = Identity.objects.select_related("contact").get(workspace__slug=workspace, kind="phone",
                                                         value="+14155550100")
    return ana.contact.root()


def _tables() -> list[str]:
    from django.db import connection

    return sorted(connection.introspection.django_table_names(only_existing=True, include_views=False))


def _demo_copy_keep(key: tuple[str, str, str]) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        return
    schema = f"test_demo_copy_{len(_demo_copies)}"
    with connection.cursor() as cur:
        cur.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
        cur.execute(f"CREATE SCHEMA {schema}")
        for table in _tables():
            cur.execute(f'CREATE TABLE {schema}."{table}" AS TABLE "{table}"')
    _demo_copies[key] = schema


def _demo_copy_restored(key: tuple[str, str, str]) -> bool:
    """Whether the copy was restored: only into a database with nothing in it but what
    post_migrate wrote (replaced by the copy's own rows, so that ids match)."""
    from django.contrib.contenttypes.models import ContentType
    from django.core.cache import cache
    from django.db import DatabaseError, connection, transaction

    schema = _demo_copies.get(key)
    if schema is None:
        return False
    tables = _tables()
    with connection.cursor() as cur:
        cur.execute("SELECT " + " OR ".join(f'EXISTS (SELECT 1 FROM "{t}")' for t in tables if t not in _MIGRATE_TABLES))
        if cur.fetchone()[0]:
            return False
        try:
            with transaction.atomic():
                # The rows as they were written: no trigger fires again (the sync log's are in
                # the copy), and foreign keys held when they were copied. Needs a superuser;
                # without one this raises and mesh_demo runs instead.
                cur.execute("SET LOCAL session_replication_role = replica")
                cur.execute("TRUNCATE " + ", ".join(f'"{t}"' for t in _MIGRATE_TABLES) + " CASCADE")
                for table in tables:
                    cur.execute(f'INSERT INTO "{table}" SELECT * FROM {schema}."{table}"')
        except DatabaseError:
            return False
    ContentType.objects.clear_cache()  # their ids are the copy's now
    cache.clear()  # fragments cached from an earlier test's rows with the same ids
    return True
