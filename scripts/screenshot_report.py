"""Screenshot reports/index.html with headless Chromium, to look at the page as a person would.

    python scripts/screenshot_report.py [reports/index.html] [--out reports/screenshot.png] [--height 6000]

Needs Debian's ``chromium`` (``apt-get install -y chromium``); not part of the test suite. The
screenshot is tall by default so that every plot on the page is in it; the script also lists the
<img> files the page refers to and whether each exists, since a missing PNG shows only as a small
broken-image icon.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", nargs="?", default="reports/index.html")
    parser.add_argument("--out", default=None, help="PNG path (default: next to the page, screenshot.png)")
    parser.add_argument("--width", type=int, default=1280)
    parser.add_argument("--height", type=int, default=6000)
    args = parser.parse_args(argv)
    page = os.path.abspath(args.page)
    if not os.path.exists(page):
        print(f"{page}: no such file (run `make parity` first)", file=sys.stderr)
        return 2
    browser = next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)
    if browser is None:
        print("no chromium on PATH: apt-get install -y chromium", file=sys.stderr)
        return 2
    out = os.path.abspath(args.out or os.path.join(os.path.dirname(page), "screenshot.png"))
    html = open(page, encoding="utf-8").read()
    folder = os.path.dirname(page)
    images = re.findall(r"<img src='([^']+)'", html)
    missing = [i for i in images if not os.path.exists(os.path.join(folder, i))]
    print(f"{len(images)} images referenced, {len(missing)} missing{': ' + ', '.join(missing) if missing else ''}")
    cmd = [browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
           f"--window-size={args.width},{args.height}", f"--screenshot={out}", f"file://{page}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    if proc.returncode != 0 or not os.path.exists(out):
        print(f"chromium failed ({proc.returncode}): {proc.stderr.strip()[-500:]}", file=sys.stderr)
        return 1
    print(f"screenshot: {out}")
    return 0 if not missing else 1


if __name__ == "__main__":
    raise SystemExit(main())
