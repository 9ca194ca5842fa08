"""The shape of the code: imports run one way between the layers, with no cycle, and functions
stay short. Both read the source with `ast`, so they cost no import and no training.

The layers are docs/design.md's module map, lowest first. An import counts wherever it is written,
inside a function too (a lazy import still makes the module depend on the other); only imports
under `if TYPE_CHECKING:` are left out, since they never run.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MAX_FUNCTION_LINES = 80

#: The layers, lowest first: a module may import its own layer or a lower one.
LAYERS = [
    ("common", {"common"}),
    ("acting", {"acting"}),
    ("TensorFlow core", {"agent", "sumtree_tf", "failure_replay", "vec_env_tf", "rewards"}),
    ("outputs", {"outputs"}),
    ("training", {"training"}),
    ("experiments", {"experiments"}),
    ("entry point", {"cartpole"}),
    ("benchmarks", {"benchmarks"}),
]


def source_files() -> list[Path]:
    """Every Python file of the project outside tests/ (and outside the venv and run dirs)."""
    skip = {"tests", ".venv", "runs", ".git"}
    return sorted(p for p in ROOT.rglob("*.py")
                  if not skip & set(p.relative_to(ROOT).parts[:-1]) and p.name != "conftest.py")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    top = module.split(".")[0]
    for rank, (_, tops) in enumerate(LAYERS):
        if top in tops:
            return rank
    raise AssertionError(f"{module} is in no layer of the module map; add it to LAYERS")


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for inner in node.body:
                lines.update(range(inner.lineno, inner.end_lineno + 1))
    return lines


def imports_of(path: Path, modules: set[str]) -> set[str]:
    """The project modules `path` imports, at module level or inside functions."""
    tree = ast.parse(path.read_text(), str(path))
    skip = _type_checking_lines(tree)
    me = module_name(path)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from . import x
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1]
                                + ([base] if base else []))
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        for name in names:
            # `import a.b.c` depends on the deepest project module it names.
            parts = name.split(".")
            for i in range(len(parts), 0, -1):
                if ".".join(parts[:i]) in modules:
                    found.add(".".join(parts[:i]))
                    break
    found.discard(me)
    return found


def import_graph() -> dict[str, set[str]]:
    files = {module_name(p): p for p in source_files()}
    return {m: imports_of(p, set(files)) for m, p in files.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 on the current path, 2 done
    path: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        path.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                cycle = visit(n)
                if cycle:
                    return cycle
        path.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state:
            cycle = visit(m)
            if cycle:
                return cycle
    return None


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{m} ({LAYERS[layer_of(m)][0]}) imports {n} ({LAYERS[layer_of(n)][0]})"
                  for m, targets in graph.items() for n in targets if layer_of(n) > layer_of(m))


def long_functions(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > MAX_FUNCTION_LINES:
                    found.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    return found


# ---------------------------------------------------------------------------------- the checks
def test_no_import_cycle_lazy_imports_included():
    graph = import_graph()
    assert "training.trainer" in graph and "common.config" in graph["training.trainer"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_no_layer_imports_a_higher_one():
    assert layer_violations(import_graph()) == []


#: Functions over the limit in files that other work in flight is rewriting (issue 20): each is
#: split there, and its line here goes with it. A line that no longer applies fails the test.
BEING_SPLIT: set[str] = set()  # none left: the limit holds everywhere


def test_no_function_over_80_lines_outside_tests():
    found = {line.split(":")[0] + " " + line.split()[1]: line for line in long_functions(source_files())}
    assert sorted(set(found) - BEING_SPLIT) == [], [found[k] for k in sorted(set(found) - BEING_SPLIT)]
    assert sorted(BEING_SPLIT - set(found)) == [], "split now: remove it from BEING_SPLIT"


def module_map_rows(text: str) -> set[str]:
    """The modules docs/design.md's module map lists, as paths: each table sits under a heading
    that names its package (**`common/`: ...) or the top level (**Top level..., **Entry point...)."""
    rows, package = set(), ""
    for line in text[text.index("## Module map"):].splitlines():
        if line.startswith("**"):
            package = line.split("`")[1] if line.startswith("**`") else ""
        elif line.startswith("| `") and line.split("`")[1].endswith(".py"):
            rows.add(package + line.split("`")[1])
    return rows


def test_the_module_map_in_design_md_matches_the_tree():
    rows = module_map_rows((ROOT / "docs" / "design.md").read_text())
    layers = {"common", "acting", "outputs", "training", "experiments"}
    tree = {str(p.relative_to(ROOT)) for p in source_files()
            if (p.parent.name in layers and p.name != "__init__.py") or p.parent == ROOT}
    assert rows == tree, ("listed, not in the tree:", sorted(rows - tree),
                          "in the tree, not listed:", sorted(tree - rows))


# ------------------------------------------------------------- the checks can fail (made-up code)
def _write(tmp_path: Path, files: dict[str, str]) -> list[Path]:
    paths = []
    for name, text in files.items():
        p = tmp_path / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
        paths.append(p)
    return paths


@pytest.fixture
def fake_root(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    return tmp_path


def test_a_lazy_import_cycle_is_found(fake_root):
    _write(fake_root, {"common/__init__.py": "", "common/a.py": "from common import b\n",
                       "common/b.py": "def f():\n    import common.a\n"})
    assert find_cycle(import_graph()) == ["common.a", "common.b", "common.a"]


def test_a_lower_layer_importing_a_higher_one_is_found(fake_root):
    _write(fake_root, {"common/__init__.py": "", "training/__init__.py": "",
                       "training/t.py": "X = 1\n",
                       "common/c.py": "def f():\n    from training.t import X\n",
                       "acting/__init__.py": "",
                       "acting/e.py": "from typing import TYPE_CHECKING\n"
                                      "if TYPE_CHECKING:\n    import training.t\n"})
    assert layer_violations(import_graph()) == [
        "common.c (common) imports training.t (training)"]


def test_a_long_function_is_found(fake_root):
    body = "".join(f"    x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    paths = _write(fake_root, {"m.py": f"def short():\n    pass\n\n\ndef long():\n{body}"})
    assert long_functions(paths) == [f"m.py:5 long ({MAX_FUNCTION_LINES + 1} lines)"]
