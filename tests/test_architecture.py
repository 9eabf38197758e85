"""The checks a reviewer runs on Mesh's structure (issue 14, "Done when"), as tests. They read the
source with ``ast``; nothing is imported or run.

- The core (``streams``, ``mesh_site``) imports no concrete connector: only the neutral modules
  of ``connectors`` (NEUTRAL_CONNECTOR_MODULES); a connector is reached through the registry.
- A concrete connector (a package pyproject.toml registers under ``mesh.connectors``) imports no
  other connector (shared code lives in a neutral module or a shared package such as
  ``connectors.email_common``), and from the core only ``streams.services`` and
  ``streams.selectors``; so does the conformance kit (``connectors.testing``).
- No import cycle among product modules, counting the imports a module runs when it is loaded
  (module level, ``if TYPE_CHECKING:`` blocks left out), each an edge to the module it names.
- No product module is over MAX_LINES lines unless its docstring says why on a line that starts
  with LONG_MARKER.
- No test module imports another test module (or a conftest): what tests share lives in
  tests/factories.py and tests/fakes/.

Product modules are the ``.py`` files under PRODUCT_PACKAGES, migrations included for the import
rules and left out of the size rule (makemigrations writes them).
"""

from __future__ import annotations

import ast
import tomllib
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCT_PACKAGES = ("connectors", "streams", "mesh_site")
CORE_PACKAGES = ("streams", "mesh_site")
# Modules of ``connectors`` that belong to no connector: the contract, the shared text, HTML and
# phone-number cleaning, the one outbound-HTTP seam. The core may import these and only these.
NEUTRAL_CONNECTOR_MODULES = frozenset({
    "connectors",
    "connectors.base",
    "connectors.text",
    "connectors.html",
    "connectors.http",
    "connectors.phone",
})
# The conformance kit third parties run against their connector: neither core nor a connector.
CONNECTOR_TEST_KIT = "connectors.testing"
# What a connector may call in the core to hand over what it receives, or to read.
CORE_API_FOR_CONNECTORS = ("streams.services", "streams.selectors")
MAX_LINES = 500
LONG_MARKER = "Long because:"


# --- reading the source ------------------------------------------------------------------------


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


@cache
def product_modules() -> dict[str, Path]:
    return {
        module_name(path): path
        for package in PRODUCT_PACKAGES
        for path in sorted((ROOT / package).rglob("*.py"))
    }


@cache
def tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def absolute(module: str, path: Path, node: ast.ImportFrom) -> str:
    """The absolute module name a ``from`` import names (relative ones resolved)."""
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package(path) else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def imported(module: str, path: Path, nodes) -> list[tuple[str, int]]:
    """(module name, line) for each module the import statements among ``nodes`` load: for
    ``from a import b``, ``a.b`` when that is a module, else ``a``."""
    known = product_modules()
    found = []
    for node in nodes:
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            target = absolute(module, path, node)
            names = [f"{target}.{alias.name}" for alias in node.names]
            submodules = [name for name in names if name in known]
            found += [(name, node.lineno) for name in submodules]
            if len(submodules) < len(names):
                found.append((target, node.lineno))
    return found


def all_imports(module: str, path: Path) -> list[tuple[str, int]]:
    """Every import in the module, at any depth (a function-level import counts as much)."""
    return imported(module, path, ast.walk(tree(path)))


def is_type_checking_block(node: ast.stmt) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")
    )


def load_time_statements(body: list[ast.stmt]):
    """The statements that run when the module is imported: the module's own, and those inside
    module-level if/try/with blocks, but not inside functions, classes' methods or
    ``if TYPE_CHECKING:``."""
    for node in body:
        if is_type_checking_block(node):
            continue
        yield node
        if isinstance(node, ast.ClassDef):
            yield from load_time_statements([n for n in node.body if not isinstance(n, ast.FunctionDef)])
        for field in ("body", "orelse", "finalbody"):
            if isinstance(node, (ast.If, ast.Try, ast.With)) and hasattr(node, field):
                yield from load_time_statements(getattr(node, field))
        for handler in getattr(node, "handlers", []):
            yield from load_time_statements(handler.body)


def load_time_graph() -> dict[str, set[str]]:
    """Product module -> the product modules it imports when loaded. An edge goes to the module
    named, not to the packages above it: Python has those in sys.modules already (a package's
    ``__init__`` importing its own submodules is no cycle)."""
    known = product_modules()
    return {
        module: {
            target
            for target, _line in imported(module, path, load_time_statements(tree(path).body))
            if target in known and target != module
        }
        for module, path in known.items()
    }


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (the cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(graph.get(start, ()))))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph.get(child, ())))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    components.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return components


def within(module: str, packages) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


@cache
def connector_packages() -> frozenset[str]:
    """The packages of the built-in connectors: those pyproject.toml registers in the
    ``mesh.connectors`` entry-point group (a shared package such as ``connectors.email_common``
    is none)."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    targets = project["project"]["entry-points"]["mesh.connectors"].values()
    return frozenset(".".join(target.split(":")[0].split(".")[:2]) for target in targets)


def connector_package(module: str) -> str | None:
    """The connector package ``module`` belongs to, if any."""
    return next((package for package in connector_packages() if within(module, (package,))), None)


def where(module: str, line: int) -> str:
    return f"{product_modules()[module].relative_to(ROOT)}:{line}"


# --- the rules -----------------------------------------------------------------------------------


def test_the_core_imports_no_concrete_connector():
    wrong = [
        f"{where(module, line)} imports {target}"
        for module, path in product_modules().items()
        if within(module, CORE_PACKAGES)
        for target, line in all_imports(module, path)
        if within(target, ("connectors",)) and target not in NEUTRAL_CONNECTOR_MODULES
    ]
    assert not wrong, "the core reaches connectors through the registry only:\n" + "\n".join(wrong)


def test_a_connector_imports_no_other_connector_and_from_the_core_only_services_and_selectors():
    wrong = []
    for module, path in product_modules().items():
        own = connector_package(module)
        if own is None and module != CONNECTOR_TEST_KIT and not within(module, NEUTRAL_CONNECTOR_MODULES):
            continue
        for target, line in all_imports(module, path):
            other = connector_package(target)
            if other is not None and other != own:
                wrong.append(f"{where(module, line)} imports another connector: {target}")
            if within(target, CORE_PACKAGES) and not within(target, CORE_API_FOR_CONNECTORS):
                wrong.append(f"{where(module, line)} imports {target} (only {', '.join(CORE_API_FOR_CONNECTORS)})")
    assert not wrong, "\n".join(wrong)


def test_product_modules_import_one_another_without_a_cycle():
    cycles = strongly_connected(load_time_graph())
    assert not cycles, "import cycles (modules that load one another):\n" + "\n".join(
        " <-> ".join(component) for component in cycles)


def test_no_module_is_over_500_lines_without_saying_why_at_its_top():
    unexplained = []
    for module, path in product_modules().items():
        if ".migrations." in f".{module}.":
            continue
        lines = path.read_text(encoding="utf-8").count("\n") + 1
        docstring = ast.get_docstring(tree(path)) or ""
        if lines > MAX_LINES and not any(line.strip().startswith(LONG_MARKER) for line in docstring.splitlines()):
            unexplained.append(f"{path.relative_to(ROOT)}: {lines} lines")
    assert not unexplained, (f"over {MAX_LINES} lines with no '{LONG_MARKER} ...' line in the module docstring:\n"
                             + "\n".join(unexplained))


def test_no_test_module_imports_another_test_module():
    tests_dir = ROOT / "tests"
    wrong = []
    for path in sorted(tests_dir.rglob("*.py")):
        if "fixtures" in path.relative_to(tests_dir).parts:
            continue
        module = module_name(path)
        for node in ast.walk(tree(path)):
            if isinstance(node, ast.ImportFrom):
                targets = [absolute(module, path, node)]
                targets += [f"{targets[0]}.{alias.name}" for alias in node.names]
            elif isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                continue
            for target in targets:
                last = target.rsplit(".", 1)[-1]
                if target.startswith("tests.") and (last.startswith("test_") or last == "conftest"):
                    wrong.append(f"{path.relative_to(ROOT)}:{node.lineno} imports {target}")
    assert not wrong, "shared test code belongs in tests/factories.py or tests/fakes/:\n" + "\n".join(wrong)


# --- the checks check what they claim (on small made-up sources) ------------------------------


def test_the_lists_above_name_modules_that_exist():
    known = product_modules()
    assert NEUTRAL_CONNECTOR_MODULES | {CONNECTOR_TEST_KIT, *CORE_API_FOR_CONNECTORS} <= set(known)
    assert connector_packages() <= set(known) and "connectors.device" in connector_packages()
    assert "connectors.base" in load_time_graph()["connectors.http"]  # the graph sees relative imports


def test_cycles_are_found_and_a_chain_is_not_a_cycle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": set()}) == []


@pytest.mark.parametrize(("source", "loaded"), [
    ("import streams.models", True),
    ("if True:\n    from streams import models", True),
    ("try:\n    import streams.models\nexcept ImportError:\n    pass", True),
    ("def f():\n    import streams.models", False),
    ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import streams.models", False),
])
def test_only_imports_run_at_load_time_make_an_edge(source, loaded):
    nodes = list(load_time_statements(ast.parse(source).body))
    found = [target for target, _ in imported("connectors.x", ROOT / "connectors" / "x.py", nodes)]
    assert ("streams.models" in found or "streams" in found) is loaded


def test_relative_imports_resolve_against_the_package():
    node = ast.parse("from .schema import parse_json").body[0]
    assert absolute("connectors.device.views", ROOT / "connectors/device/views.py", node) == "connectors.device.schema"
    node = ast.parse("from . import views").body[0]
    assert absolute("connectors.twilio_sms", ROOT / "connectors/twilio_sms/__init__.py", node) == "connectors.twilio_sms"
