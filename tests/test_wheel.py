"""The wheel works on its own: built, installed outside the checkout with its core dependencies plus ``[report]``.

What a user of the package meets: the core pipeline's requirements carry none of the report or demo tools (they
are extras), the notebook the report executes ships inside the package, and ``synth``, ``run``, ``sql`` and
``report`` work from a temporary directory with nothing of the checkout on ``sys.path``. The versions come from
``uv.lock`` (``uv export --frozen``), so the test installs what CI locked, from uv's cache, without resolving.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
UV = shutil.which("uv", path=str(Path(sys.executable).parent)) or shutil.which("uv")
EXTRAS_ONLY = {"papermill", "nbconvert", "ipykernel", "matplotlib", "moto"}

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _uv(*args: str, cwd: Path) -> str:
    assert UV, "uv is in the dev group: ./dev.sh installs it"
    done = subprocess.run([UV, *args], cwd=cwd, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, f"uv {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dist = tmp_path_factory.mktemp("dist")
    _uv("build", "--wheel", "--out-dir", str(dist), str(ROOT), cwd=ROOT)
    (built,) = dist.glob("taxi_assets-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv outside the checkout holding the wheel, its locked core dependencies and ``[report]``."""
    home = tmp_path_factory.mktemp("wheel-home")
    requirements = home / "requirements.txt"
    _uv("export", "--frozen", "--no-dev", "--extra", "report", "--no-emit-project", "-o", str(requirements), cwd=ROOT)
    venv = home / "venv"
    _uv("venv", "--python", sys.executable, str(venv), cwd=home)
    python = venv / "bin" / "python"
    _uv("pip", "install", "--python", str(python), "-r", str(requirements), cwd=home)
    _uv("pip", "install", "--python", str(python), "--no-deps", str(wheel), cwd=home)
    return venv


def test_the_core_requirements_leave_report_and_demo_tools_to_extras(wheel: Path):
    with zipfile.ZipFile(wheel) as archive:
        (meta_name,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        meta = Parser().parsestr(archive.read(meta_name).decode())
        names = archive.namelist()
    requires = meta.get_all("Requires-Dist") or []
    core = {r.split("[")[0].split("=")[0].split(";")[0].strip().lower() for r in requires if "extra ==" not in r}
    assert {"prefect", "deltalake"} <= core  # the parse found the core list
    assert core.isdisjoint(EXTRAS_ONLY), core & EXTRAS_ONLY
    by_extra = {r.split("[")[0].split("=")[0].strip().lower() for r in requires if "extra == 'report'" in r}
    assert by_extra == {"papermill", "nbconvert", "ipykernel", "matplotlib"}
    assert set(meta.get_all("Provides-Extra") or []) == {"report", "s3-demo"}
    assert "taxi_assets/analysts/quality_report.ipynb" in names  # report needs no checkout


def test_synth_run_sql_and_report_work_from_the_installed_wheel(installed: Path, tmp_path: Path):
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PREFECT_", "TAXI_"))}
    env |= {
        "PATH": f"{installed / 'bin'}{os.pathsep}{env.get('PATH', '')}",
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "180",
        "DO_NOT_TRACK": "1",
    }
    cli = str(installed / "bin" / "taxi-assets")

    def run(*args: str) -> str:
        done = subprocess.run([cli, *args], cwd=work, env=env, capture_output=True, text=True, timeout=600)
        assert done.returncode == 0, f"taxi-assets {' '.join(args)} -> {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout

    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import taxi_assets; print(taxi_assets.__file__)"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert Path(where.strip()).is_relative_to(installed)  # the wheel's copy, not the checkout's

    run("synth", "--dest", "source", "--months", "2019-02..2019-03", "--rows", "2000")
    summary = json.loads(run("run", "--source", "source", "--sink", "warehouse", "--json"))
    assert sorted(summary["written"]) == ["2019-02", "2019-03"], summary
    rows = json.loads(run("sql", "--sink", "warehouse", "--format", "json", "SELECT count(*) AS n FROM trips"))
    quarantined = json.loads(
        run("sql", "--sink", "warehouse", "--format", "json", "SELECT count(*) AS n FROM quarantine")
    )
    assert int(rows[0]["n"]) + int(quarantined[0]["n"]) == 4000  # every source row is clean or quarantined
    run("report", "--sink", "warehouse", "--output", "report.html")
    html = (work / "report.html").read_text()
    assert "2019-03" in html
    assert "<img" in html
