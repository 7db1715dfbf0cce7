"""The package's import contract, checked on the source tree (ast) and on a real interpreter (sys.modules).

- ``model`` imports nothing else from the package (``taxi_assets.errors`` aside: a leaf with the named errors).
- ``io``, ``assets``, ``checks`` and ``analysts`` never import prefect, prefect_dask, dask, distributed or coiled.
- Only ``orchestration`` imports them at module level; ``cli`` may, inside a function (lazily).
- ``taxi-assets sql`` loads no Prefect, Dask, demo or synth module.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import taxi_assets

PACKAGE = Path(taxi_assets.__file__).parent
ORCHESTRATORS = {"prefect", "prefect_dask", "dask", "distributed", "coiled"}
LAYERS = ("model", "io", "assets", "checks", "orchestration", "analysts", "cli", "synth")


def modules(layer: str) -> list[Path]:
    return sorted((PACKAGE / layer).rglob("*.py"))


def imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    """Every module ``path`` imports (absolute names); only those at module level when asked."""
    tree = ast.parse(path.read_text(), filename=str(path))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.If):  # `if TYPE_CHECKING:` blocks are not run
            continue
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
    return found


def roots(names: set[str]) -> set[str]:
    return {name.split(".")[0] for name in names}


def test_every_module_sits_in_a_layer():
    loose = {p.name for p in PACKAGE.glob("*.py")} - {"__init__.py", "__main__.py", "errors.py", "settings.py"}
    assert loose == set(), "a module outside the layers: place it in one (see taxi_assets/__init__.py)"
    assert all((PACKAGE / layer / "__init__.py").is_file() for layer in LAYERS)


@pytest.mark.parametrize("path", modules("model"), ids=lambda p: p.name)
def test_model_imports_nothing_else_from_the_package(path: Path):
    ours = {name for name in imports(path) if name.startswith("taxi_assets")}
    assert ours <= {"taxi_assets.errors"} | {n for n in ours if n.startswith("taxi_assets.model")}


@pytest.mark.parametrize(
    "path",
    [p for layer in ("model", "io", "assets", "checks", "analysts") for p in modules(layer)],
    ids=lambda p: f"{p.parent.name}/{p.name}",
)
def test_data_layers_never_import_an_orchestrator(path: Path):
    assert not roots(imports(path)) & ORCHESTRATORS


@pytest.mark.parametrize("path", modules("cli") + modules("synth"), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_only_orchestration_imports_an_orchestrator_at_module_level(path: Path):
    assert not roots(imports(path, top_level_only=True)) & ORCHESTRATORS


def test_the_orchestration_layer_is_where_prefect_lives():
    found = set().union(*(roots(imports(p)) for p in modules("orchestration")))
    assert {"prefect", "prefect_dask"} <= found


def test_sql_loads_no_orchestrator_pandas_demo_or_synth(tmp_path: Path):
    """Issue 14.6: `sql` over a real sink imports only what a query needs (pandas would be ~0.5 s of imports)."""
    cli = [sys.executable, "-m", "taxi_assets"]
    source, sink = str(tmp_path / "source"), str(tmp_path / "sink")
    subprocess.run([*cli, "synth", "--dest", source, "--months", "2019-02", "--rows", "300"], check=True)
    subprocess.run([*cli, "materialize", "--source", source, "--sink", sink, "--partition", "2019-02"], check=True)
    probe = (
        "import sys; from taxi_assets.cli.main import main; "
        f"code = main(['sql', '--sink', {sink!r}, "
        "'SELECT count(*) FROM trips JOIN zones ON PULocationID = LocationID JOIN partitions ON true']); "
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in {'prefect', 'prefect_dask', 'dask', "
        "'distributed', 'coiled', 'pandas'} or m.startswith(('taxi_assets.cli.demo', 'taxi_assets.synth', "
        "'taxi_assets.orchestration.flows', 'taxi_assets.assets'))); print('LOADED', code, bad)"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=False)
    assert "LOADED 0 []" in done.stdout, done.stdout + done.stderr
