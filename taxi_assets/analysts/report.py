"""The quality report: ``quality_report.ipynb`` (package data beside this module), run headlessly, as one HTML file.

Papermill runs the notebook with a kernel of *this* interpreter: a kernelspec pointing at ``sys.executable``
is written to a temporary ``JUPYTER_PATH`` for the run, so a ``python3`` kernel of some other environment
(user or system wide) can never be picked up instead. Credentials are never notebook parameters: the kernel
inherits the environment, and ``duckdb_connect`` reads the standard ``AWS_*`` variables from it.

nbconvert's HTML exporter inlines the plots as base64 PNG; the input cells are hidden and the template's
CDN scripts (MathJax, require.js; the report uses neither) are dropped and the mermaid loader stays inert
without diagrams, so the file opens offline and needs nothing next to it.
Plot style lives here too, so every figure shares one palette.
"""

from __future__ import annotations

import html
import importlib.util
import json
import logging
import os
import re
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Final

import matplotlib as mpl
from cycler import cycler

from partitions.keys import parse_month, parse_selection
from taxi_assets.analysts.errors import ReportNotWritable
from taxi_assets.analysts.views import sink_tables
from taxi_assets.errors import ReportFailed
from taxi_assets.settings import Settings

NOTEBOOK: Final = Path(__file__).resolve().with_name("quality_report.ipynb")  # ships in the wheel
KERNEL_NAME: Final = "taxi-assets-report"
# Okabe-Ito: distinguishable with the common colour-vision deficiencies, and in greyscale print.
PALETTE: Final = ("#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000")
COMPANY_COLORS: Final = {"Uber": "#0072B2", "Lyft": "#CC79A7", "Via": "#009E73", "Juno": "#E69F00"}
_EXTERNAL_SCRIPT: Final = re.compile(r"<script[^>]*\bsrc=\"https?://[^\"]*\"[^>]*>\s*</script>", re.IGNORECASE)
# A section heading (its text, anchor link and all) or a figure nbconvert inlined, in document order.
_HEADING_OR_FIGURE: Final = re.compile(
    r'<h([1-4])[^>]*>(?P<title>.*?)</h\1>|<img alt="[^"]*" class="[^"]*" src="(?P<src>data:image/png;base64,[^"]*)"',
    re.DOTALL,
)


def apply_style() -> None:
    """One look for every figure of the report: palette, readable sizes, light grid, no chart junk."""
    mpl.rcParams.update(
        {
            "figure.figsize": (10.0, 4.0),
            "figure.dpi": 100,
            "figure.constrained_layout.use": True,
            "axes.prop_cycle": cycler(color=list(PALETTE)),
            "axes.titlesize": 13,
            "axes.titleweight": "bold",
            "axes.labelsize": 11,
            "axes.grid": True,
            "axes.spines.top": False,
            "axes.spines.right": False,
            "grid.alpha": 0.3,
            "xtick.labelsize": 10,
            "ytick.labelsize": 10,
            "legend.frameon": False,
        }
    )


def render_report(
    sink: str, output: str | Path, *, months: str | Sequence[str] | None = None, timeout: int = 600
) -> Path:
    """Execute the report notebook against ``sink`` and write one self-contained HTML file to ``output``.

    ``months`` limits the report to those keys (``"2019-02..2019-06"``, a list, or ``None``: every month in the
    sink). Raises :class:`ReportFailed` naming the failing cell, :class:`NoTablesInSink` for a sink without
    tables and :class:`ReportNotWritable` for an output that is a directory or cannot be written (both checked
    before the kernel starts). The file appears whole or not at all: no partial file is ever left behind.
    """
    # Imported here: seconds of import that the notebook kernel (which imports apply_style) and every other
    # `taxi-assets` command should not pay.
    import papermill
    from papermill.exceptions import PapermillExecutionError

    cfg = Settings.resolve(sink=sink)
    keys = parse_selection(months) if isinstance(months, str) else [parse_month(m) for m in months or ()] or None
    out = Path(output)
    _check_writable(out)
    if not NOTEBOOK.is_file():
        raise ReportFailed(cfg.sink, str(out), f"notebook {NOTEBOOK} not found: reinstall taxi-assets")
    sink_tables(cfg.sink, cfg.storage_options(cfg.sink))  # NoTablesInSink (exit 2) before any kernel starts
    if importlib.util.find_spec("ipykernel") is None:
        raise ReportFailed(cfg.sink, str(out), f"ipykernel is not installed for {sys.executable} (uv sync)")
    with TemporaryDirectory(prefix="taxi-assets-report-") as tmp:
        executed = Path(tmp) / "quality_report.ipynb"
        with kernel_of_this_python(Path(tmp) / "jupyter"):
            try:
                papermill.execute_notebook(
                    str(NOTEBOOK),
                    str(executed),
                    parameters={"sink": cfg.sink, "months": keys},
                    kernel_name=KERNEL_NAME,
                    cwd=tmp,
                    progress_bar=False,
                    execution_timeout=timeout,
                )
            except PapermillExecutionError as exc:
                detail = f"cell {exc.exec_count} raised {exc.ename}: {_first_line(exc.evalue)}"
                raise ReportFailed(cfg.sink, str(out), _redact(detail, cfg)) from None
        html = export_html(executed)
    partial = out.with_name(f".{out.name}.partial")
    try:
        partial.write_text(html, encoding="utf-8")
        partial.replace(out)
    except OSError as exc:
        raise ReportNotWritable(str(out), exc.strerror or type(exc).__name__) from None
    finally:
        partial.unlink(missing_ok=True)
    return out


def _check_writable(out: Path) -> None:
    """Refuse a directory or a place no file can be created, before minutes of work are spent."""
    if out.is_dir():
        raise ReportNotWritable(str(out), "it is a directory")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ReportNotWritable(str(out), f"cannot create {out.parent}: {exc.strerror or type(exc).__name__}") from None
    if not os.access(out.parent, os.W_OK):
        raise ReportNotWritable(str(out), f"{out.parent} is not writable")


def export_html(notebook: Path) -> str:
    """The executed notebook as one offline HTML page: outputs only, plots inlined, no CDN scripts."""
    import nbformat  # imported here for the same reason as papermill
    from nbconvert import HTMLExporter

    # nbconvert warns that the figures have no alternative text; describe_figures gives them one below.
    quiet = logging.getLogger("taxi_assets.analysts.nbconvert")
    quiet.setLevel(logging.ERROR)
    exporter = HTMLExporter(
        log=quiet,
        template_name="lab",
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        embed_images=True,
    )
    body, _ = exporter.from_notebook_node(nbformat.read(notebook, as_version=4))
    return _EXTERNAL_SCRIPT.sub("", describe_figures(body))


def describe_figures(body: str) -> str:
    """Give each figure an alternative text naming the section it illustrates and its place there.

    nbconvert writes "No description has been provided for this image" (and warns), which tells a screen
    reader nothing; every figure of the report sits under the heading of the section it belongs to.
    """
    section, seen = "the report", 0

    def named(match: re.Match[str]) -> str:
        nonlocal section, seen
        if match["src"] is None:
            title = html.unescape(re.sub(r"<[^>]+>", "", match["title"])).replace("\u00b6", "").strip()
            section, seen = title or section, 0
            return match[0]
        seen += 1
        alt = html.escape(f"Figure {seen} of the section \u201c{section}\u201d", quote=True)
        return f'<img src="{match["src"]}" alt="{alt}"'

    return _HEADING_OR_FIGURE.sub(named, body)


@contextmanager
def kernel_of_this_python(root: Path) -> Iterator[None]:
    """Put a kernelspec running ``sys.executable`` first on ``JUPYTER_PATH`` for the duration."""
    spec_dir = root / "kernels" / KERNEL_NAME
    spec_dir.mkdir(parents=True)
    spec = {
        # ERROR level: the kernel's start-up warnings (TCP on localhost) are noise on the CLI's stderr.
        "argv": [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            "--IPKernelApp.log_level=ERROR",
        ],
        "display_name": "taxi-assets (report)",
        "language": "python",
        "metadata": {"debugger": False},
    }
    (spec_dir / "kernel.json").write_text(json.dumps(spec), encoding="utf-8")
    previous = os.environ.get("JUPYTER_PATH")
    os.environ["JUPYTER_PATH"] = os.pathsep.join([str(root), *([previous] if previous else [])])
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("JUPYTER_PATH", None)
        else:
            os.environ["JUPYTER_PATH"] = previous


def _first_line(text: str) -> str:
    return next((line.strip() for line in str(text).splitlines() if line.strip()), "")


def _redact(text: str, cfg: Settings) -> str:
    for secret in cfg.secret_values():
        text = text.replace(secret, "***")
    return text
