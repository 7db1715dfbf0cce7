"""The engine's boundary, checked: no domain import, no orchestration import, no domain word."""

import ast
import re
from pathlib import Path

import pytest

import partitions

PACKAGE = Path(partitions.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))
FORBIDDEN_IMPORTS = {"taxi_assets", "prefect", "dask", "distributed", "coiled"}
FORBIDDEN_WORDS = re.compile(r"taxi|fhvhv", re.IGNORECASE)


def imported_roots(tree: ast.AST) -> set[str]:
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) in {
            "__import__",
            "import_module",
        }:
            roots.update(a.value.split(".")[0] for a in node.args if isinstance(a, ast.Constant))
    return roots


def test_the_package_has_modules_to_check():
    assert {"keys.py", "staleness.py", "delta_log.py", "overwrite.py", "listing.py"} <= {m.name for m in MODULES}


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_imports_nothing_from_the_domain_or_orchestration(module):
    roots = imported_roots(ast.parse(module.read_text(), filename=str(module)))
    assert not roots & FORBIDDEN_IMPORTS


@pytest.mark.parametrize("module", MODULES, ids=lambda p: p.name)
def test_module_never_names_the_domain(module):
    hits = [
        f"{module.name}:{n}"
        for n, line in enumerate(module.read_text().splitlines(), 1)
        if FORBIDDEN_WORDS.search(line)
    ]
    assert hits == []


def test_init_only_re_exports():
    tree = ast.parse((PACKAGE / "__init__.py").read_text())
    body = [n for n in tree.body if not (isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant))]
    assert all(isinstance(n, ast.ImportFrom | ast.Assign) for n in body)
    assert sorted(partitions.__all__) == sorted(
        alias.asname or alias.name for n in body if isinstance(n, ast.ImportFrom) for alias in n.names
    )
    assert (PACKAGE / "py.typed").is_file()
