"""The shape of the code, checked: layers import downwards only and at module top, modules and
functions stay small, the command line loads nothing heavy before a command runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# lowest first; a module may import its own layer and those below it
LAYERS = ("core", "specs", "adapters", "bounds", "search", "verifiers", "tasks", "vnncomp",
          "cli", "api")
# imports that stay inside a function, and why
LAZY = {("adapters/onnx_load.py", "onnx.reference"):
        "the reference evaluator adds ~0.25 s to every process that reads a network; it only "
        "folds the constant subgraphs some PyTorch exports have",
        ("adapters/onnx_load.py", "onnx"):
        "import onnx takes ~1.5 s (most of it ml_dtypes); networks are read with onnx's "
        "generated messages alone, onnx only loads weights kept in external files",
        ("adapters/onnx_tensors.py", "onnx"):
        "the same ~1.5 s, only for element types no network layer uses (strings, 8-bit floats)",
        ("plugin/tasks/epsilon.py", "nnbisim.adapters.merged_onnx"):
        "writing the merged network imports onnx (~1.5 s); only the exact verifier's "
        "bisection writes one, bounds-only eps runs and --eps decisions do not",
        ("plugin/tasks/epsilon.py", "nnbisim.adapters.onnx_write"): "the same",
        ("adapters/ray_pool.py", "ray"):
        "an optional extra that takes ~1 s to import; only --ray needs it"}
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 60  # body, docstring excluded
MAX_PARAMETERS = 8  # self/cls not counted; an options object counts as one
HEAVY = ("torch", "onnx", "onnxruntime", "maraboupy", "matplotlib")


def _modules() -> dict[str, Path]:
    """Every library module by its import name."""
    out = {}
    for folder, package in (("plugin", "nnbisim"), ("adapters", "nnbisim.adapters"),
                            ("specs", "nnbisim.specs")):
        for path in sorted((REPO / folder).rglob("*.py")):
            parts = list(path.relative_to(REPO / folder).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join([package, *parts])] = path
    return out


def layer(module: str) -> int:
    """The layer index of a module of the package (the package root is core's)."""
    parts = module.split(".")
    name = parts[1] if len(parts) > 1 else "core"
    return LAYERS.index(name) if name in LAYERS else 0


def _imports(tree: ast.AST) -> list[tuple[ast.AST, str]]:
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(node, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            out += [(node, node.module)]
            out += [(node, f"{node.module}.{a.name}") for a in node.names
                    if f"{node.module}.{a.name}" in MODULES]
    return out


MODULES = _modules()


def _inside_functions(tree: ast.AST) -> set[int]:
    """Line numbers of import statements inside a function or method."""
    lines = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for inner in ast.walk(node):
                if isinstance(inner, (ast.Import, ast.ImportFrom)):
                    lines.add(inner.lineno)
    return lines


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_go_downwards_and_stay_at_module_top(module):
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    inner = _inside_functions(tree)
    rel = str(path.relative_to(REPO))
    for node, name in _imports(tree):
        if name.startswith("nnbisim"):
            assert layer(name) <= layer(module), (
                f"{rel}:{node.lineno} imports {name} ({LAYERS[layer(name)]}) from the "
                f"{LAYERS[layer(module)]} layer: imports go downwards only")
        if node.lineno in inner:
            assert (rel, name) in LAZY, f"{rel}:{node.lineno}: import {name} inside a function"


def test_no_import_cycles():
    graph = {}
    for module, path in MODULES.items():
        tree = ast.parse(path.read_text())
        inner = _inside_functions(tree)
        graph[module] = {name for node, name in _imports(tree)
                         if name in MODULES and node.lineno not in inner and name != module}
    done, stack = set(), []

    def visit(m: str) -> None:
        if m in stack:
            raise AssertionError("import cycle: " + " -> ".join([*stack[stack.index(m):], m]))
        if m in done:
            return
        stack.append(m)
        for n in graph[m]:
            if not m.startswith(n + "."):  # a package's __init__ runs before its modules
                visit(n)
        stack.pop()
        done.add(m)
    for m in graph:
        visit(m)


def _functions(tree: ast.AST):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node


@pytest.mark.parametrize("module", sorted(MODULES))
def test_modules_and_functions_stay_small(module):
    path = MODULES[module]
    text = path.read_text()
    rel = str(path.relative_to(REPO))
    assert len(text.splitlines()) <= MAX_MODULE_LINES, f"{rel}: over {MAX_MODULE_LINES} lines"
    for fn in _functions(ast.parse(text)):
        body = fn.body
        start = body[0].lineno
        if (isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            start = body[1].lineno if len(body) > 1 else body[0].end_lineno
        length = fn.end_lineno - start + 1
        a = fn.args
        params = [*a.posonlyargs, *a.args, *a.kwonlyargs]
        count = len(params) + (a.vararg is not None) + (a.kwarg is not None)
        if params and params[0].arg in ("self", "cls"):
            count -= 1
        assert length <= MAX_FUNCTION_LINES, f"{rel}:{fn.lineno} {fn.name}: {length} lines"
        assert count <= MAX_PARAMETERS, f"{rel}:{fn.lineno} {fn.name}: {count} parameters"


def test_the_command_line_loads_nothing_heavy_before_a_command_runs():
    code = ("import sys; from nnbisim.cli.main import build_parser; build_parser(); "
            f"print([m for m in {HEAVY!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "[]", f"the parser imports {out}"


def _subcommands() -> list[list[str]]:
    from nnbisim.cli.parser import build_parser

    out = []
    for action in build_parser()._subparsers._group_actions:  # noqa: SLF001
        for name, sub in action.choices.items():
            nested = [a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction"]
            if nested:
                out += [[name, inner] for inner in nested[0].choices]
            else:
                out.append([name])
    return out


def test_every_command_has_a_summary_and_every_option_a_line_of_help():
    from nnbisim.cli.parser import build_parser

    parser = build_parser()
    for path in _subcommands():
        sub = parser
        for name in path:
            group = next(a for a in sub._actions if a.__class__.__name__ == "_SubParsersAction")
            sub = group.choices[name]
        assert sub.description, f"nnbisim {' '.join(path)} has no one-line description"
        for action in sub._actions:
            if action.dest in ("help",) or action.help == "==SUPPRESS==":
                continue
            assert action.help, f"nnbisim {' '.join(path)}: {action.option_strings or action.dest}"
