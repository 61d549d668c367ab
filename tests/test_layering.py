"""Imports run one way (docs/architecture.md): every rs_jax module imports only from the
packages below its own, function-level imports included. Command-line modules (cli.py) sit
on top and may import anything. Every function in rs_jax/models fits in 80 lines."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "rs_jax"

# Package -> the rs_jax packages it may import (besides itself), lowest layer first.
ALLOWED = {
    "__init__": set(),
    "config_files": set(),
    "files": set(),
    "sharding": set(),
    "models": {"sharding"},
    "convert": {"config_files", "files", "sharding", "models"},
    "kb": {"files", "sharding", "models", "convert"},
    "data": {"files", "kb"},
    "train": {"config_files", "files", "sharding", "models", "convert", "kb", "data"},
    "eval": {"config_files", "files", "sharding", "models", "convert", "kb", "data", "train"},
    "plan": {"config_files", "files", "sharding", "models", "data", "train", "eval"},
}


def _package(path: Path) -> str:
    return path.relative_to(PACKAGE).with_suffix("").parts[0]


def _imported_packages(path: Path) -> list[tuple[int, str]]:
    """(line, rs_jax package) of every import of another rs_jax module in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
            if node.module == "rs_jax":  # from rs_jax import config_files
                names = [f"rs_jax.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "rs_jax" and len(parts) > 1:
                # A name that is no subpackage or module (rs_jax.__version__) is the root's.
                found.append((node.lineno, parts[1] if parts[1] in ALLOWED else "__init__"))
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.name != "cli.py")


def test_every_package_has_a_rule():
    assert {_package(p) for p in MODULES} <= set(ALLOWED)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_run_one_way(path):
    own = _package(path)
    wrong = [
        f"{path.relative_to(PACKAGE.parent)}:{line} imports rs_jax.{target}"
        for line, target in _imported_packages(path)
        if target not in (own, "__init__") and target not in ALLOWED[own]
    ]
    assert not wrong, f"rs_jax.{own} may import only {sorted(ALLOWED[own])}: {wrong}"


def test_the_check_sees_function_level_imports(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from rs_jax.train import trainer\n    import rs_jax.eval\n")
    assert _imported_packages(module) == [(2, "train"), (3, "eval")]


# The network's code reads top to bottom (docs/architecture.md): no function in
# rs_jax/models is longer than a screenful.
MAX_MODEL_FUNCTION_LINES = 80


def test_model_functions_fit_a_screen():
    too_long = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno} {node.name} "
        f"({node.end_lineno - node.lineno + 1} lines)"
        for path in sorted((PACKAGE / "models").rglob("*.py"))
        for node in ast.walk(ast.parse(path.read_text(), str(path)))
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_MODEL_FUNCTION_LINES
    ]
    assert not too_long, too_long
