"""Render an erpack report (or any HTML file) in headless Chromium and save a PNG screenshot.

    python tools/screenshot_report.py runs/bench/report.html -o runs/bench/report.png [--width 1280 --height 2000]

A check by eye that the self-contained report reads well in a real browser (tables, embedded
figures). Not part of the test suite: CI installs nothing by apt. Needs Chromium
(Debian: `apt-get install chromium`); exits with status 2 and that hint when it is missing.
The browser runs offline-quiet (no network services, a throw-away profile) and is killed after
--timeout seconds.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CANDIDATES = ("/usr/bin/chromium", "chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser(given: str | None = None) -> str | None:
    for name in ([given] if given else []) + list(CANDIDATES):
        path = name if Path(name).is_file() else shutil.which(name)
        if path:
            return path
    return None


def screenshot(html: Path, png: Path, browser: str, width: int = 1280, height: int = 2000, timeout: int = 120) -> None:
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="erpack-chromium-") as profile:
        cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--hide-scrollbars", f"--user-data-dir={profile}", f"--screenshot={png.resolve()}",
               f"--window-size={width},{height}", html.resolve().as_uri()]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0 or not png.is_file():
        raise SystemExit(f"chromium failed (exit {done.returncode}): {done.stderr.strip()[-800:]}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("html", type=Path, help="the HTML file to render")
    p.add_argument("-o", "--output", type=Path, help="PNG to write (default: HTML name with .png)")
    p.add_argument("--width", type=int, default=1280, help="window width in pixels")
    p.add_argument("--height", type=int, default=2000, help="window height in pixels (the screenshot's length)")
    p.add_argument("--browser", help="browser executable (default: chromium found on this machine)")
    p.add_argument("--timeout", type=int, default=120, help="seconds before the browser is killed")
    args = p.parse_args(argv)
    if not args.html.is_file():
        print(f"screenshot_report: {args.html} does not exist", file=sys.stderr)
        return 2
    browser = find_browser(args.browser)
    if browser is None:
        print("screenshot_report: no Chromium found; install it (Debian: apt-get install chromium) or pass --browser",
              file=sys.stderr)
        return 2
    out = args.output or args.html.with_suffix(".png")
    screenshot(args.html, out, browser, args.width, args.height, args.timeout)
    print(f"wrote {out} ({out.stat().st_size} bytes) with {browser}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
