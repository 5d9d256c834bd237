"""The shape of the code: what each algorithm script imports from common/, and how common/ is layered.

Every import is read from the source (module level and inside functions), so a lazy import that
closes a cycle counts as much as a top-level one.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("rosmo", "mzu", "mzu_q", "crr", "cql", "bc")
COMMON = sorted(p.stem for p in (ROOT / "common").glob("*.py") if p.stem != "__init__")
DATA_MODULES = ("data", "replay", "episodes", "atari_data", "bsuite_data", "stream", "http_source", "tfds_files", "tfrecord")


def imports_of(path: Path):
    """(common modules imported, names bound from common/, other top-level modules imported) by `path`."""
    modules, names, others = set(), set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:  # relative: a sibling in the same package
            if node.module:
                modules.add(node.module.split(".")[0])
                names |= {alias.asname or alias.name for alias in node.names}
            else:
                modules |= {alias.name for alias in node.names}
                names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module == "common":
            modules |= {alias.name for alias in node.names}
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("common."):
            modules.add(node.module.split(".")[1])
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            others.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("common."):
                    modules.add(alias.name.split(".")[1])
                    names.add(alias.asname or alias.name)
                else:
                    others.add(alias.name.split(".")[0])
    return modules, names, others


def common_graph():
    return {name: imports_of(ROOT / "common" / f"{name}.py")[0] for name in COMMON}


def in_cycles(graph) -> list:
    """The modules of `graph` ({module: modules it imports}) from which an import path leads back to them."""

    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    return [name for name in graph if name in reachable(name)]


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_imports_few_common_modules_by_name_and_no_other_script(script):
    modules, names, others = imports_of(ROOT / f"{script}.py")
    assert modules <= set(COMMON), modules - set(COMMON)
    assert len(modules) <= 7, sorted(modules)
    assert len(names) <= 12, sorted(names)
    assert not others & set(SCRIPTS), others & set(SCRIPTS)


def test_common_has_no_import_cycle():
    assert in_cycles(common_graph()) == []


def test_the_check_finds_a_cycle_closed_by_a_lazy_or_relative_import(tmp_path):
    (tmp_path / "a.py").write_text("def f():\n    from common.b import g\n")  # inside a function
    (tmp_path / "b.py").write_text("from . import c\n")
    (tmp_path / "c.py").write_text("from common import a\n")
    (tmp_path / "d.py").write_text("from common import a\n")  # imports into the cycle, is not on it
    graph = {p.stem: imports_of(p)[0] for p in sorted(tmp_path.glob("*.py"))}
    assert graph == {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert in_cycles(graph) == ["a", "b", "c"]


def test_common_knows_no_algorithm_data_knows_no_model_and_networks_know_no_data():
    for name in COMMON:
        _, _, others = imports_of(ROOT / "common" / f"{name}.py")
        assert not others & set(SCRIPTS), (name, others & set(SCRIPTS))
        assert "benchmark" not in others and "tests" not in others, name
    graph = common_graph()
    for name in DATA_MODULES:
        assert "networks" not in graph[name], name
    assert graph["networks"] == set()  # flax and jax only
    assert not graph["errors"] and not graph["files"]  # the leaves every other module may use
