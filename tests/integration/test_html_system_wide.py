"""A real system-wide recording's HTML flame graph in headless Chromium at 1400x900: the first
screen shows the root and the widest frames (needs root, BPF and Chromium).

The machine's own load is whatever other programs run; the test adds three busy processes of
its own so that the recording holds several processes whatever else runs.
"""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests import chromium
from tests.conftest import tool

pytestmark = pytest.mark.bpf

ROOT_GREY = (209, 209, 209)  # the page's root colour, hsl(0, 0%, 82%)
# A frame without a name: `[unknown]` or `object+0xOFFSET`
UNNAMED = re.compile(r"^(\[unknown\]|\S+\+0x[0-9a-f]+)$")
TOWER = 8  # this many unnamed frames in a row: a frame-pointer walk through code without them
BUSY_PY = "import time\nend = time.time() + 120\nwhile time.time() < end: pass\n"


@pytest.mark.timeout(300)
def test_system_wide_recording_first_screen(fixture_bins, tmp_path):
    exe = chromium.chromium_or_skip()
    # GIVEN three busy processes of our own (they outlive bcc's compile on a loaded machine)
    busy = [subprocess.Popen([str(fixture_bins / name), "120"], stdout=subprocess.DEVNULL)
            for name in ("workload-pie", "workload-nopie")]
    busy.append(subprocess.Popen([sys.executable, "-c", BUSY_PY]))
    try:
        # WHEN the whole system is recorded for 5 s and symbolized to HTML
        rec = tmp_path / "run.parquet"
        subprocess.run([tool("ebpf-record"), "--out", str(rec), "--duration", "5"],
                       check=True, timeout=180, stdout=subprocess.DEVNULL,
                       stderr=subprocess.PIPE)
    finally:
        for p in busy:
            p.kill()
            p.wait()
    # no towers of unnamed frames (issue 10: frame-pointer walks of code built without them
    # made 127-frame `[unknown]` towers of a third of a system-wide graph)
    folded = subprocess.run([tool("ebpf-symbolize"), str(rec), "--cache-dir",
                             str(tmp_path / "cache")], check=True, timeout=180,
                            capture_output=True, text=True).stdout
    total = towers = 0
    for line in folded.splitlines():
        if not line or line.startswith("#"):
            continue
        stack, n = line.rsplit(" ", 1)
        total += int(n)
        run = longest = 0
        for frame in stack.split(";"):
            run = run + 1 if UNNAMED.match(frame) else 0
            longest = max(longest, run)
        towers += int(n) if longest >= TOWER else 0
    assert total > 0 and towers <= 0.01 * total, (towers, total)
    page_path = tmp_path / "flame.html"
    subprocess.run([tool("ebpf-symbolize"), str(rec), "--format", "html", "--out",
                    str(page_path), "--cache-dir", str(tmp_path / "cache")],
                   check=True, timeout=180, capture_output=True)
    page = page_path.read_text(encoding="utf-8")
    data = chromium.page_data(page)
    assert len(data["windows"]) >= 3  # one tree per drain window (1 s each)
    processes = chromium.widest_frames(data, 10**6)
    comms = {label for label, _ in processes}
    assert {"workload-pie", "workload-nopie"} <= comms
    fp = chromium.first_paint(exe, page, tmp_path, name="recorded-system-wide")
    info = fp.info
    # THEN nothing needed scrolling: the root and the three widest frames are on screen,
    # labelled, as wide as their samples
    assert info["scrolled"] == 0
    (root_frame,) = fp.frames("all")
    assert fp.on_screen(root_frame), root_frame
    total = sum(w["nodes"][1] for w in data["windows"])
    for label, samples in chromium.widest_frames(data, 3):
        want = root_frame["w"] * samples / total
        assert any(fp.on_screen(f) and f["w"] == pytest.approx(want, abs=0.6)
                   for f in fp.frames(label)), (label, want, fp.frames(label))
    # ...and the screenshot shows the root where the layout put it.
    x, y = int(root_frame["x"]) + 2, int(root_frame["y"]) + 2
    assert chromium.png_pixel(fp.png, x, y) == pytest.approx(ROOT_GREY, abs=3), fp.png
