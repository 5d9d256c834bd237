"""The shape of the code: what each algorithm script imports from common/, and how common/ is layered.

Every import is read from the source (module level and inside functions), so a lazy import that
closes a cycle counts as much as a top-level one.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = ("rosmo", "mzu", "mzu_q", "crr", "cql", "bc")
PACKAGES = ("atari", "bsuite")  # the data families, one package each
# Every module of common/ by its dotted name below common: "data", "atari.loader", "bsuite.env", ...
COMMON = sorted(
    ".".join(p.relative_to(ROOT / "common").with_suffix("").parts)
    for p in (ROOT / "common").rglob("*.py")
    if p.name != "__init__.py"
)
CORE = [m for m in COMMON if "." not in m]  # the shared modules at the top of common/
DATA_MODULES = ("data", "replay", "episodes", "tfrecord", *[m for m in COMMON if m.split(".")[0] in PACKAGES])


def _module(name: str, package: str = "") -> str:
    """A module's name below common/ from an absolute (common.x.y) or relative (within `package`) name."""
    if name.startswith("common."):
        return name[len("common.") :]
    return f"{package}.{name}" if package else name


def imports_of(path: Path):
    """(common modules imported, names bound from common/, other top-level modules imported) by `path`.

    Modules are named below common/ ("data", "atari.loader"); `from common.atari import loader` counts as
    "atari.loader", `from common.atari.games import X` as "atari.games"."""
    package = ".".join(path.relative_to(ROOT / "common").parts[:-1]) if (ROOT / "common") in path.parents else ""
    modules, names, others = set(), set(), set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level > 0:  # relative: a sibling in the same package
            if node.module:
                modules.add(_module(node.module, package))
                names |= {alias.asname or alias.name for alias in node.names}
            else:
                modules |= {_module(alias.name, package) for alias in node.names}
                names |= {alias.asname or alias.name for alias in node.names}
        elif (
            isinstance(node, ast.ImportFrom) and node.module and (node.module == "common" or node.module.startswith("common."))
        ):
            below = node.module[len("common.") :] if node.module != "common" else ""
            if not below:  # from common import data
                modules |= {alias.name for alias in node.names}
            elif below in PACKAGES:  # from common.atari import loader
                modules |= {f"{below}.{alias.name}" for alias in node.names}
            else:  # from common.atari.games import X
                modules.add(below)
            names |= {alias.asname or alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            others.add(node.module.split(".")[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("common."):
                    modules.add(alias.name[len("common.") :])
                    names.add(alias.asname or alias.name)
                else:
                    others.add(alias.name.split(".")[0])
    return modules, names, others


def common_graph():
    return {name: imports_of(ROOT / "common" / f"{name.replace('.', '/')}.py")[0] for name in COMMON}


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
        _, _, others = imports_of(ROOT / "common" / f"{name.replace('.', '/')}.py")
        assert not others & set(SCRIPTS), (name, others & set(SCRIPTS))
        assert "benchmark" not in others and "tests" not in others, name
    graph = common_graph()
    for name in DATA_MODULES:
        assert "networks" not in graph[name], name
    assert graph["networks"] == set()  # flax and jax only
    assert not graph["errors"] and not graph["files"]  # the leaves every other module may use


def test_the_data_path_reads_one_way_script_data_family_core():
    """data.py is the one entry that picks a family; a family package reaches the shared core and itself, never
    data.py, the other family, the run or the evaluation code; the core below them reaches no family (evaluation.py
    steps the families' environments, the one exception). So a script's data go script -> data -> family -> core."""
    graph = common_graph()
    for name in COMMON:
        family = name.split(".")[0] if "." in name else None
        reached = {m.split(".")[0] for m in graph[name]}
        if family:
            assert not reached & ({"data", "runs", "evaluation"} | set(PACKAGES) - {family}), (name, sorted(graph[name]))
        elif name not in ("data", "evaluation"):
            assert not reached & set(PACKAGES), (name, sorted(graph[name]))
    assert {m for m in graph["evaluation"] if "." in m} <= {"atari.env", "bsuite.env"}


def test_common_files_do_one_job_each_none_over_600_lines():
    long = {
        name: n
        for name in COMMON
        if (n := len((ROOT / "common" / f"{name.replace('.', '/')}.py").read_text().splitlines())) > 600
    }
    assert long == {}, long
