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
DATA_MODULES = ("data", "replay", "episodes", "atari_data", "bsuite_data", "stream", "http_source")


def imports_of(path: Path):
    """(common modules imported, names bound from common/, other top-level modules imported) by `path`."""
    modules, names, others = set(), set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module == "common":
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


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_imports_few_common_modules_by_name_and_no_other_script(script):
    modules, names, others = imports_of(ROOT / f"{script}.py")
    assert modules <= set(COMMON), modules - set(COMMON)
    assert len(modules) <= 7, sorted(modules)
    assert len(names) <= 12, sorted(names)
    assert not others & set(SCRIPTS), others & set(SCRIPTS)


def test_common_has_no_import_cycle():
    graph = common_graph()

    def reachable(start):
        seen, todo = set(), [start]
        while todo:
            for nxt in graph.get(todo.pop(), ()):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        return seen

    assert [name for name in graph if name in reachable(name)] == []


def test_the_check_finds_a_cycle_when_there_is_one(tmp_path):
    # The reader above sees imports inside functions too: a lazy import closing a loop is found.
    (tmp_path / "a.py").write_text("def f():\n    from common.b import g\n")
    (tmp_path / "b.py").write_text("from common import a\n")
    assert imports_of(tmp_path / "a.py")[0] == {"b"} and imports_of(tmp_path / "b.py")[0] == {"a"}


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
