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


def common_names_used(path: Path) -> set:
    """The names of common/ a file uses: `module.name` for every attribute read through a module imported with
    `from common import module`, and every name imported with `from common.module import name`."""
    tree = ast.parse(path.read_text())
    aliases, used = {}, set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "common":
            for alias in node.names:
                if node.module == "common":
                    aliases[alias.asname or alias.name] = alias.name
                else:
                    used.add(f"{node.module[len('common.') :]}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in aliases:
            used.add(f"{aliases[node.value.id]}.{node.attr}")
    return used


def test_the_name_count_sees_attributes_and_from_imports(tmp_path):
    path = tmp_path / "script.py"
    path.write_text(
        "from common import data, runs as r\nfrom common.networks import logits_to_scalar\n"
        "data.load_for(1)\ndata.load_for(2)\nr.Run()\nx = data.is_atari\nother.thing()\n"
    )
    assert common_names_used(path) == {"data.load_for", "data.is_atari", "runs.Run", "networks.logits_to_scalar"}


# The names of common/ a script uses, at most. Today 24 (bc.py) to 28 (crr.py): the data (4), the networks and their
# heads' scalars (4-8), the replay's sampling and types (3), the seeds' and devices' placement (4), the run (3), the
# evaluator (1) and the one-line errors (5). The aim is about 15; the cap stops the count from growing meanwhile.
MAX_COMMON_NAMES = 28


@pytest.mark.parametrize("script", SCRIPTS)
def test_a_script_uses_few_names_of_common(script):
    used = common_names_used(ROOT / f"{script}.py")
    assert len(used) <= MAX_COMMON_NAMES, sorted(used)


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


# ---------------------------------------------------------------------------------------------
# benchmark/: the studies' table, the runner, the micro-benchmarks, and one way to a script's code.

BENCHMARK = sorted(p.stem for p in (ROOT / "benchmark").glob("*.py") if p.name != "__init__.py")
# benchmark/algorithms.py's `script(name)`: the one way a benchmark reaches an algorithm script's code.
SCRIPT_HELPER = "algorithms"
LEAVES = ("algorithms", "common_bench")  # import nothing of benchmark/


def benchmark_imports_of(path: Path):
    """(benchmark modules imported, other top-level modules imported, modules imported by name at run time) by
    `path`: `from benchmark import x` and `from benchmark.x import y` count as "x"; a call of `import_module` or
    `__import__` (importlib's or the builtin) counts as a run-time import, its argument as written."""
    modules, others, dynamic = set(), set(), []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "benchmark":
                modules |= {alias.name for alias in node.names}
            elif node.module.startswith("benchmark."):
                modules.add(node.module.split(".")[1])
            else:
                others.add(node.module.split(".")[0])
        elif isinstance(node, ast.ImportFrom):  # relative: a sibling in benchmark/
            modules |= {node.module.split(".")[0]} if node.module else {alias.name for alias in node.names}
        elif isinstance(node, ast.Import):
            for alias in node.names:
                top, _, below = alias.name.partition(".")
                (modules.add(below.split(".")[0]) if top == "benchmark" and below else others.add(top))
        elif isinstance(node, ast.Call):
            called = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
            if called in ("import_module", "__import__"):
                dynamic.append(ast.unparse(node.args[0]) if node.args else "")
    return modules, others, dynamic


def benchmark_graph():
    return {name: benchmark_imports_of(ROOT / "benchmark" / f"{name}.py")[0] & set(BENCHMARK) for name in BENCHMARK}


def test_the_script_check_sees_plain_lazy_and_run_time_imports(tmp_path):
    (tmp_path / "a.py").write_text(
        "import importlib\nfrom benchmark.runner import run_configs\n"
        "def f():\n    import rosmo\n    from mzu import mcts\n    return importlib.import_module('bc')\n"
    )
    modules, others, dynamic = benchmark_imports_of(tmp_path / "a.py")
    assert modules == {"runner"} and others >= {"importlib", "rosmo", "mzu"} and dynamic == ["'bc'"]


def test_a_benchmark_reaches_an_algorithm_script_only_through_the_one_helper():
    from benchmark.algorithms import SCRIPTS as HELPER_SCRIPTS

    assert tuple(HELPER_SCRIPTS) == SCRIPTS  # the helper knows every script
    for name in BENCHMARK:
        _, others, dynamic = benchmark_imports_of(ROOT / "benchmark" / f"{name}.py")
        assert not others & set(SCRIPTS), (name, others & set(SCRIPTS))
        if name != SCRIPT_HELPER:
            assert "importlib" not in others and not dynamic, (name, dynamic)
    _, _, dynamic = benchmark_imports_of(ROOT / "benchmark" / f"{SCRIPT_HELPER}.py")
    assert dynamic == ["name"]  # script(name) itself


def test_benchmark_has_no_import_cycle_and_its_table_and_runner_sit_below_the_command_line():
    graph = benchmark_graph()
    assert in_cycles(graph) == []
    assert {"reproduce", "runner", "studies", "study", "claims", SCRIPT_HELPER} <= set(graph)
    for name in BENCHMARK:
        assert "reproduce" not in graph[name], name  # the command line is the top: nothing imports it
    for name in LEAVES:
        assert graph[name] == set(), (name, graph[name])
    assert "runner" not in graph["studies"] | graph["study"] | graph["claims"]  # the studies describe, never run


def test_benchmark_files_none_over_600_lines():
    long = {name: n for name in BENCHMARK if (n := len((ROOT / "benchmark" / f"{name}.py").read_text().splitlines())) > 600}
    assert long == {}, long


def sys_path_changes(path: Path) -> list:
    """The lines of `path` that change sys.path: a call of one of its methods (insert, append, ...), or an
    assignment to it or to a slice of it."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            targets = [node.func.value]
        elif isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            targets = [t.value if isinstance(t, ast.Subscript) else t for t in targets]
        else:
            continue
        if any(ast.unparse(t) == "sys.path" for t in targets):
            lines.append(node.lineno)
    return sorted(lines)


def test_the_sys_path_check_sees_every_way_to_change_it(tmp_path):
    (tmp_path / "a.py").write_text(
        "import sys\nsys.path.insert(0, 'x')\nsys.path[:0] = ['y']\nsys.path += ['z']\nsys.path = []\n"
        "print(sys.path)\npaths = list(sys.path)\nos.path.join('a')\n"
    )
    assert sys_path_changes(tmp_path / "a.py") == [2, 3, 4, 5]


def test_no_file_of_the_project_changes_sys_path():
    """The scripts, common/, benchmark/ and tests/ find one another as run from the repository root (tests through
    pytest.ini's pythonpath and PYTHONPATH), never by editing sys.path."""
    files = [ROOT / f"{s}.py" for s in SCRIPTS]
    files += [p for folder in ("common", "benchmark", "tests") for p in sorted((ROOT / folder).rglob("*.py"))]
    changed = [f"{path.relative_to(ROOT)}:{line}" for path in files for line in sys_path_changes(path)]
    assert changed == [], changed
