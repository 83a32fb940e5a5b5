"""Imports go one way: orchestrator -> trainables -> storage. storage imports neither Ray
nor MLflow; the model imports neither."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def _files(package: str):
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("package,forbidden", [
    ("storage", {"ray", "mlflow", "trainables", "orchestrator", "torch"}),
    ("trainables", {"orchestrator"}),
])
def test_packages_import_one_way(package, forbidden):
    files = _files(package)
    assert files
    for f in files:
        bad = _imports(f) & forbidden
        assert not bad, f"{f.relative_to(ROOT)} imports {sorted(bad)}"


def test_model_imports_neither_ray_nor_mlflow():
    bad = _imports(ROOT / "trainables" / "model.py") & {"ray", "mlflow"}
    assert not bad
