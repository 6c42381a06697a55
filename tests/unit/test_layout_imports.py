"""The package's layout is kept: imports only go down the floors, no two modules import each other
(directly or through others), and no module uses another module's private names.

Every import counts, at module level or inside a function: a late import hides a circle from
Python, not from the reader. The floors are the README's layout section (cli above ui, since the CLI launches the page).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "lifecycle"
GENERATED = ("lifecycle.server.protos", "lifecycle.serving.wire.tfs_wire_pb2")

# Top to bottom: a module imports only from its own room or from rooms on lower floors.
FLOORS: tuple[tuple[str, ...], ...] = (
    ("__main__",),
    ("cli",),  # it launches mlc ui
    ("ui",),  # it reads through the api
    ("api",),
    ("operations", "predictions", "hooks"),
    ("rollout", "register"),
    ("train",),
    ("serving", "networks", "server"),
    ("store",),
    ("errors", "failpoints", "tf_import", "progress"),
)
FLOOR = {room: i for i, rooms in enumerate(FLOORS) for room in rooms}


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        name = name.removesuffix(".__init__")
        if not name.startswith(GENERATED):
            found[name] = path
    return found


MODULES = _modules()


def _target(name: str) -> str | None:
    """The module a dotted name lands in (``a.b.c`` may be module ``a.b`` and its attribute ``c``)."""
    if name.startswith(GENERATED):
        return None  # generated protos: leaves that import nothing of mlc's
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _imports() -> dict[str, dict[str, list[tuple[int, str]]]]:
    """module -> imported module -> [(line, names imported)]."""
    edges: dict[str, dict[str, list[tuple[int, str]]]] = defaultdict(lambda: defaultdict(list))
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    target = _target(alias.name) if alias.name.startswith("lifecycle") else None
                    if target and target != module:
                        edges[module][target].append((node.lineno, ""))
            elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lifecycle"):
                assert node.level == 0, f"{path}:{node.lineno}: relative import"
                for alias in node.names:
                    target = _target(f"{node.module}.{alias.name}")
                    if target and target != module:
                        edges[module][target].append((node.lineno, alias.name))
    return edges


EDGES = _imports()


def _room(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_room_has_a_floor() -> None:
    rooms = {_room(m) for m in MODULES} - {"__init__"}
    assert rooms <= set(FLOOR), f"rooms without a floor in FLOORS: {sorted(rooms - set(FLOOR))}"


def test_imports_go_only_down_the_floors() -> None:
    upward = []
    for module, targets in EDGES.items():
        room = _room(module)
        for target, where in targets.items():
            other = _room(target)
            if other != room and FLOOR.get(other, 99) <= FLOOR.get(room, -1):
                upward.append(f"{MODULES[module].relative_to(ROOT)}:{where[0][0]} {room} imports {target} ({other})")
    assert not upward, "imports that do not go down a floor:\n" + "\n".join(sorted(upward))


def test_no_module_imports_its_own_package() -> None:
    """A module that imports its package's __init__ makes a circle whenever the __init__ re-exports it."""
    def reexports(package: str) -> bool:
        return any(t.startswith(package + ".") for t in EDGES.get(package, {}))

    inward = [f"{MODULES[m].relative_to(ROOT)} imports {t}" for m, ts in EDGES.items() for t in ts
              if MODULES[t].name == "__init__.py" and m.startswith(t + ".") and reexports(t)]
    assert not inward, "\n".join(inward)


def test_no_import_circles() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:  # Tarjan's strongly connected components
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in EDGES.get(v, {}):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(MODULES):
        if module not in index:
            visit(module)
    assert not circles, "modules that import each other:\n" + "\n".join(" <-> ".join(c) for c in circles)


def test_no_module_uses_another_modules_private_names() -> None:
    private = [f"{MODULES[m].relative_to(ROOT)}:{line} imports {name} from {t}"
               for m, ts in EDGES.items() for t, uses in ts.items() for line, name in uses
               if name.startswith("_") and not name.startswith("__")]
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        imported = {a.asname or a.name: node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and node.module and node.module.startswith("lifecycle") for a in node.names}
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__")
                    and isinstance(node.value, ast.Name) and node.value.id in imported
                    and _target(f"{imported[node.value.id]}.{node.value.id}") not in (None, module)):
                private.append(f"{path.relative_to(ROOT)}:{node.lineno} uses {node.value.id}.{node.attr}")
    assert not private, "\n".join(sorted(private))


MAX_LINES = 450


def test_every_module_is_small_enough_to_read() -> None:
    """A module over 450 lines holds more than one thing: split it where the code shows the seam."""
    big = {str(p.relative_to(ROOT)): n for p in MODULES.values() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_every_exception_class_is_in_errors() -> None:
    """One hierarchy: every exception class mlc defines lives in lifecycle/errors.py."""
    elsewhere = []
    for module, path in MODULES.items():
        if module == "lifecycle.errors":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and any(
                    isinstance(b, ast.Name) and (b.id.endswith(("Error", "Exception")) or b.id in ERROR_NAMES)
                    for b in node.bases):
                elsewhere.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not elsewhere, "exception classes outside lifecycle/errors.py:\n" + "\n".join(elsewhere)


def _error_names() -> set[str]:
    tree = ast.parse((PACKAGE / "errors.py").read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.ClassDef)}


ERROR_NAMES = _error_names()
