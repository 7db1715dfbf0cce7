"""Render the quality report HTML in headless Chromium to PNG, for a human look (issue 15.5).

    python benchmarks/screenshot_report.py report.html report.png            # one tall PNG + tiles report-01.png ...
    python benchmarks/screenshot_report.py --sink ./data/warehouse report.png  # render the report first

Uses Debian's ``chromium`` (``apt-get install -y chromium``) in headless mode with networking off: the page
must render from the file alone. The full page is captured in one window as tall as ``--height``; the tiles
(``--tile`` pixels high) are what a reviewer opens one by one. Prints the render and screenshot times and sizes.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

Image.MAX_IMAGE_PIXELS = None  # a tall page is a big image, and it is ours


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    sys.exit("chromium not found: apt-get install -y chromium")


def screenshot(page: Path, png: Path, *, width: int, height: int) -> None:
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [
            chromium(),
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={profile}",
            "--proxy-server=127.0.0.1:9",  # no network: a page that needs one shows it
            f"--window-size={width},{height}",
            f"--screenshot={png}",
            page.resolve().as_uri(),
        ]
        subprocess.run(cmd, check=True, capture_output=True, timeout=180)


def trim(png: Path) -> int:
    """Cut the blank bottom of the capture; return the height kept."""
    with Image.open(png) as image:
        rgb = image.convert("RGB")
        box = Image.eval(rgb, lambda v: 255 - v).getbbox()
        bottom = min(rgb.height, (box[3] if box else rgb.height) + 20)
        rgb.crop((0, 0, rgb.width, bottom)).save(png)
        return bottom


def tiles(png: Path, tile: int) -> list[Path]:
    out = []
    with Image.open(png) as image:
        for i, top in enumerate(range(0, image.height, tile), start=1):
            part = png.with_name(f"{png.stem}-{i:02d}.png")
            image.crop((0, top, image.width, min(image.height, top + tile))).save(part)
            out.append(part)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("html", nargs="?", help="the report HTML (omit with --sink)")
    parser.add_argument("png", help="where to write the PNG")
    parser.add_argument("--sink", help="render the report of this sink first (taxi-assets report)")
    parser.add_argument("--months", help="with --sink: the months to cover")
    parser.add_argument("--width", type=int, default=1300)
    parser.add_argument("--height", type=int, default=16000, help="window height: at least the page's")
    parser.add_argument("--tile", type=int, default=1400, help="height of each tile PNG (0: no tiles)")
    args = parser.parse_args(argv)
    png = Path(args.png)
    if args.sink:
        from partitions.keys import parse_selection
        from taxi_assets.analysts.report import render_report

        page = png.with_suffix(".html")
        started = time.perf_counter()
        render_report(args.sink, page, months=parse_selection(args.months) if args.months else None)
        print(f"report rendered in {time.perf_counter() - started:.1f} s: {page} ({page.stat().st_size:,} bytes)")
    elif args.html:
        page = Path(args.html)
    else:
        parser.error("give the report HTML or --sink")
    started = time.perf_counter()
    screenshot(page, png, width=args.width, height=args.height)
    kept = trim(png)
    print(f"screenshot in {time.perf_counter() - started:.1f} s: {png} ({args.width} x {kept} px)")
    if kept >= args.height - 20:
        print(f"the page may be taller than --height {args.height}: raise it", file=sys.stderr)
    for part in tiles(png, args.tile) if args.tile else []:
        print(part)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
