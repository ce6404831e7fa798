"""No import cycles among framecast's own modules, and no import across the layers: every import
counts, including those inside functions (a deferred import hides a cycle from Python, not from the
reader)."""

from __future__ import annotations

import ast
import fnmatch
import tomllib
from pathlib import Path

from tests.conftest import REPO

PACKAGES = ("common", "producer", "worker", "tracker", "encoder", "web", "framecast")  # shipped in the wheel
UNSHIPPED = ("testsupport", "tests", "bench")
# What each shipped package may import of ours besides itself (a package, or a package's subpackage):
# `common` is the contract, no service imports another but for the tracker's use of the vision
# library (`worker.detect`; the worker never imports the tracker) and the encoder's of the tracker's
# fencing lease (`tracker.lease`: one lease implementation), and only the CLI (`framecast`)
# knows every service. Nothing shipped imports UNSHIPPED, which the wheel and the image leave out.
MAY_IMPORT = {
    "common": set(),
    "producer": {"common"},
    "web": {"common"},
    "worker": {"common"},
    "tracker": {"common", "worker.detect"},
    "encoder": {"common", "tracker.lease"},
    "framecast": {"common", "producer", "worker", "tracker", "encoder", "web"},
}


def _modules() -> dict[str, Path]:
    """Module name -> file, for every module of PACKAGES (a package is its __init__.py)."""
    out = {}
    for package in PACKAGES:
        for path in (REPO / package).rglob("*.py"):
            parts = list(path.relative_to(REPO).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            out[".".join(parts)] = path
    return out


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imported_names(module: str, path: Path) -> set[str]:
    """Every dotted name `module` imports (`from a import b` gives a.b and a), outside TYPE_CHECKING."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    skip = {id(n) for node in ast.walk(ast.parse(path.read_text(), str(path)))
            if isinstance(node, ast.If) and _is_type_checking(node) for n in ast.walk(node)}
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the modules of ours it imports (a name that is not a module means its nearest package)."""
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in _imported_names(module, path):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    done: set[str] = set()
    for root in sorted(graph):
        if root in done:
            continue
        path, on_path = [root], {root}
        stack = [iter(sorted(graph[root]))]
        while stack:
            target = next(stack[-1], None)
            if target is None:
                stack.pop()
                done.add(path.pop())
                on_path = set(path)
            elif target in on_path:
                return path[path.index(target):] + [target]
            elif target not in done:
                path.append(target)
                on_path.add(target)
                stack.append(iter(sorted(graph[target])))
    return None


def layer_breaks(modules: dict[str, Path]) -> list[str]:
    """`module imports name` for every import of ours that MAY_IMPORT does not allow `module`'s package."""
    breaks = []
    for module, path in sorted(modules.items()):
        package = module.partition(".")[0]
        for name in sorted(_imported_names(module, path)):
            top = name.partition(".")[0]
            allowed = any(name == ok or name.startswith(ok + ".") for ok in MAY_IMPORT[package])
            if top in PACKAGES + UNSHIPPED and top != package and not allowed:
                breaks.append(f"{module} imports {name}")
    return breaks


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_graph_sees_deferred_and_relative_imports(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "__init__.py").write_text("")
    (tmp_path / "pkg" / "a.py").write_text("def f():\n    from pkg import b\n")
    (tmp_path / "pkg" / "b.py").write_text("from .a import f\n")
    modules = {"pkg": tmp_path / "pkg" / "__init__.py", "pkg.a": tmp_path / "pkg" / "a.py",
               "pkg.b": tmp_path / "pkg" / "b.py"}
    assert find_cycle(import_graph(modules)) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])


def test_no_import_cycles():
    modules = _modules()
    assert {"web.app", "web.state", "common.config"} <= set(modules)
    cycle = find_cycle(import_graph(modules))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_layer_check_sees_deferred_imports_of_other_layers(tmp_path):
    files = {
        "common/contract.py": "def f():\n    from worker import detect\n",
        "producer/main.py": "from common import contract\nimport testsupport.redis_server\n",
        "web/app.py": "from . import state\nfrom producer.publisher import CameraPublisher\n",
        "worker/live.py": "import redis\nfrom common.keys import Keys\nfrom worker.detect import base\n",
        "worker/cli.py": "from tracker import main\n",
        "tracker/owner.py": "from common import untracked\nfrom worker.detect.annotate import draw\nimport worker.live\n",
        "framecast/cli.py": "from worker.live import main\nfrom web import app\nfrom bench.harness import REPO\n",
    }
    modules = {}
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
        modules[name.removesuffix(".py").replace("/", ".")] = tmp_path / name
    assert layer_breaks(modules) == [
        "common.contract imports worker", "common.contract imports worker.detect",
        "framecast.cli imports bench.harness", "framecast.cli imports bench.harness.REPO",
        "producer.main imports testsupport.redis_server",
        "tracker.owner imports worker.live",
        "web.app imports producer.publisher", "web.app imports producer.publisher.CameraPublisher",
        "worker.cli imports tracker", "worker.cli imports tracker.main",
    ]


def test_no_import_crosses_the_layers():
    modules = _modules()
    assert {"common.config", "producer.main", "worker.live.main", "tracker.main", "web.app",
            "framecast.cli"} <= set(modules)
    assert layer_breaks(modules) == []


def test_the_wheel_ships_the_services_and_no_test_support():
    """pyproject's package patterns take exactly PACKAGES of the repo's top-level packages (so
    testsupport/, tests/ and bench/ stay out of the wheel, and a new package is a choice)."""
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    top_level = {path.parent.name for path in REPO.glob("*/__init__.py")}
    assert set(UNSHIPPED) <= top_level
    assert {name for name in top_level if any(fnmatch.fnmatchcase(name, p) for p in include)} == set(PACKAGES)
