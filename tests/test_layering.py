"""The package's shape: no import loop (imports inside functions included), imports only down
the layers of ARCHITECTURE.md, no HTTP library in the core, and no private name of a
dependency (requests, httpx, pluggy, ...) read or written anywhere in it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "memoram_auth"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> dict[str, ast.Module]:
    return {
        _module_name(path): ast.parse(path.read_text(encoding="utf-8"))
        for path in sorted(PACKAGE.rglob("*.py"))
    }


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base.pop()
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, anywhere in its body."""
    sources = _sources()
    packages = {name for name in sources if (PACKAGE.parent / name.replace(".", "/")).is_dir()}
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, tree in sources.items():
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(name, name in packages, node)
                # "from . import x" imports the submodule x when there is one.
                targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in sources]
                targets = targets or [base]
            for target in targets:
                if target in sources and target != name:
                    graph[name].add(target)
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*stack[stack.index(target) :], target]
            if target not in state and (found := visit(target)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_module_is_in_an_import_loop() -> None:
    graph = import_graph()
    assert "memoram_auth.settings" in graph["memoram_auth.provider"] or graph  # sanity
    assert _cycle(graph) is None, " -> ".join(_cycle(graph) or [])


def _defined_names(trees: list[ast.Module]) -> set[str]:
    """Every name the package itself defines: functions, classes, attributes it assigns."""
    names: set[str] = set()
    for tree in trees:
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names.add(node.attr)
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names.add(node.id)
            elif isinstance(node, ast.alias):
                names.add((node.asname or node.name).split(".")[-1])
            if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
            ):
                names.update(
                    c.value
                    for c in ast.walk(node.value)
                    if isinstance(c, ast.Constant) and isinstance(c.value, str)
                )
    return names


def _is_private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def private_uses(trees: dict[str, ast.Module]) -> list[str]:
    """Private modules of other packages imported, and private attributes the package does
    not define itself (so they belong to a dependency) read or written."""
    own = _defined_names(list(trees.values()))
    found: list[str] = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""] * (node.level == 0)
                )
                for name in names:
                    top, *rest = name.split(".")
                    if top != "memoram_auth" and any(p.startswith("_") for p in rest):
                        found.append(f"{module}: import {name}")
            elif isinstance(node, ast.Attribute):
                if _is_private(node.attr) and node.attr not in own:
                    found.append(f"{module}:{node.lineno}: .{node.attr}")
            elif isinstance(node, ast.Call):
                # getattr(obj, "_name"), attrgetter("_name"), setattr(obj, "_name", ...)
                for arg in node.args:
                    if (
                        isinstance(arg, ast.Constant)
                        and isinstance(arg.value, str)
                        and _is_private(arg.value)
                        and arg.value not in own
                        and getattr(node.func, "id", getattr(node.func, "attr", ""))
                        in {"getattr", "setattr", "hasattr", "attrgetter"}
                    ):
                        found.append(f"{module}:{node.lineno}: {arg.value!r}")
    return found


def test_the_private_name_check_catches_both_kinds() -> None:
    tree = ast.parse(
        "import httpx._multipart\nx = url._uri_reference\nself._mine = 1\ny = a._mine\n"
        "z = attrgetter('_content')\nw = getattr(r, '_mine')"
    )
    assert private_uses({"m": tree}) == [
        "m: import httpx._multipart",
        "m:2: ._uri_reference",
        "m:5: '_content'",
    ]


def test_no_private_name_of_a_dependency_is_used() -> None:
    assert private_uses(_sources()) == []


@pytest.mark.parametrize("module", ["requests", "httpx", "pluggy"])
def test_no_private_module_of_a_dependency_is_imported(module: str) -> None:
    for name, tree in _sources().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith(f"{module}._"):
                pytest.fail(f"{name} imports {node.module}")


#: The layers, lowest first (see ARCHITECTURE.md). A module imports only from its own layer
#: or lower ones; imports under ``if TYPE_CHECKING:`` are for annotations and do not count.
LAYERS: list[tuple[str, set[str]]] = [
    (
        "leaves",
        {
            "_env",
            "_log",
            "_version",
            "exceptions",
            "keys",
            "token",
            "_policy",
            "_urls",
            "_origin",
            "_derive",
            "agent",
            "agent.protocol",
        },
    ),
    ("storage", {"cache"}),
    (
        "core",
        {"core", "core.steps", "core.header", "core.exchange", "core.provider", "core.refresher"},
    ),
    ("transports", {"transport", "transports", "transports.*"}),
    (
        "configuration and plugins",
        {"settings", "hookspecs", "plugins", "plugins.*"},
    ),
    ("composition", {"exchange", "provider", "agent.client"}),
    ("adapters", {"adapters", "adapters.*", "auth"}),
    (
        "entry points",
        {
            "",
            "__main__",
            "cli",
            "httpie_plugin",
            "pytest_plugin",
            "_demo",
            "_completion",
            "emulator",
            "emulator.*",
            "agent.server",
            "agent.run",
        },
    ),
]


def layer_of(module: str) -> int:
    name = module.removeprefix("memoram_auth").removeprefix(".")
    for index, (_, members) in enumerate(LAYERS):
        for member in members:
            if name == member or (member.endswith(".*") and name.startswith(member[:-1])):
                return index
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and to ARCHITECTURE.md")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def runtime_imports(tree: ast.Module) -> list[ast.Import | ast.ImportFrom]:
    """Every import that can run: at the top, in functions, anywhere but under TYPE_CHECKING."""
    found: list[ast.Import | ast.ImportFrom] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def runtime_graph() -> dict[str, set[str]]:
    """:func:`import_graph` without the imports under TYPE_CHECKING."""
    sources = _sources()
    packages = {name for name in sources if (PACKAGE.parent / name.replace(".", "/")).is_dir()}
    graph: dict[str, set[str]] = {name: set() for name in sources}
    for name, tree in sources.items():
        for node in runtime_imports(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, name in packages, node)
                targets = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in sources]
                targets = targets or [base]
            graph[name].update(t for t in targets if t in sources and t != name)
    return graph


def test_every_module_has_a_layer() -> None:
    for module in _sources():
        layer_of(module)


def test_imports_only_go_down_the_layers() -> None:
    wrong = [
        f"{module} ({LAYERS[layer_of(module)][0]}) imports {target} ({LAYERS[layer_of(target)][0]})"
        for module, targets in runtime_graph().items()
        for target in sorted(targets)
        if layer_of(target) > layer_of(module)
    ]
    assert wrong == []


def test_the_direction_check_sees_a_lazy_import_upwards() -> None:
    tree = ast.parse(
        "def f():\n    from ..plugins import notify\n"
        "if TYPE_CHECKING:\n    from ..transport import X\n"
    )
    imports = runtime_imports(tree)
    assert len(imports) == 1
    assert isinstance(imports[0], ast.ImportFrom)
    assert _resolve("memoram_auth.core.provider", False, imports[0]) == "memoram_auth.plugins"
    assert layer_of("memoram_auth.plugins") > layer_of("memoram_auth.core.provider")


#: Not in the core, eagerly or lazily: the HTTP libraries, the stdlib's HTTP clients, pluggy.
FORBIDDEN_IN_THE_CORE = (
    "requests",
    "httpx",
    "aiohttp",
    "yarl",
    "urllib3",
    "http",
    "urllib.request",
    "ssl",
    "socket",
    "pluggy",
)


def test_the_core_imports_no_http_library_and_no_plugin_manager() -> None:
    for name, tree in _sources().items():
        if not name.startswith("memoram_auth.core"):
            continue
        for node in runtime_imports(tree):
            modules = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""] * (node.level == 0)
            )
            for module in modules:
                assert not any(
                    module == bad or module.startswith(f"{bad}.") for bad in FORBIDDEN_IN_THE_CORE
                ), f"{name} imports {module}"
