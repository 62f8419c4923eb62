#!/usr/bin/env python3
"""Size and load time of the HTML flame graph for large profiles, in headless Chromium.

For each stack count: the synthetic system-wide window of tests/helpers/system_profile.py with
that many unique stacks, the page's bytes, the time the sink takes to write it, and for each
view the time from navigation to the end of the page's script (first paint follows at once),
read by the same probe the tests use (tests/chromium.py) at 1400x900. Nothing is asserted.

    .venv/bin/python benchmarks/html_page.py [--stacks 20000 100000]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from symbolizer.sinks import html  # noqa: E402
from tests import chromium  # noqa: E402
from tests.helpers.system_profile import many_stacks  # noqa: E402

VIEWS = {"call tree": "", "inverted": "#view=inverted", "functions": "#view=functions"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--stacks", type=int, nargs="+", default=[20_000, 100_000])
    args = ap.parse_args()
    exe = chromium.CHROMIUM
    print("| unique stacks | tree nodes | page bytes | bytes/stack | sink s | "
          + " | ".join(f"{v} ms" for v in VIEWS) + " |")
    print("|---:|---:|---:|---:|---:|" + "---:|" * len(VIEWS))
    for n in args.stacks:
        profiles = many_stacks(n)
        t0 = time.perf_counter()
        page = html.render(profiles)
        sink_s = time.perf_counter() - t0
        nodes = sum(len(w["nodes"]) // 3 for w in html.to_data(profiles)["windows"])
        size = len(page.encode())
        loads = []
        with tempfile.TemporaryDirectory() as d:
            for i, fragment in enumerate(VIEWS.values()):
                fp = chromium.first_paint(exe, page, Path(d), fragment=fragment, name=f"v{i}")
                loads.append(fp.info["loadedMs"])
        print(f"| {n:,} | {nodes:,} | {size:,} | {size / n:.0f} | {sink_s:.1f} | "
              + " | ".join(f"{ms:,.0f}" for ms in loads) + " |", flush=True)


if __name__ == "__main__":
    main()
