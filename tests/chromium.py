"""Headless Chromium (Debian's /usr/bin/chromium) for the HTML flame graph tests (no tests here).

`first_paint` opens a page at a window size twice: once for a PNG screenshot a human can look
at, once with a script appended that reports, from the browser's own layout, where each frame
of the main chart is and whether it is the element under its centre (on screen, not covered).

Chromium 156's headless mode lays a page out in a viewport smaller than --window-size (1400x757
for 1400,900: room for a browser's own bars, as a real 1400x900 window has) and, for
--screenshot only, resizes it to the full size just before the capture. So the layout read
from --dump-dom is that of the smaller viewport, a stricter test of "on the first screen";
what is anchored to the bottom of the window sits lower in the PNG by the difference.
"""

from __future__ import annotations

import html
import json
import os
import re
import shutil
import struct
import subprocess
import zlib
from dataclasses import dataclass
from pathlib import Path

from tests.conftest import skip_or_fail

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Where screenshots are copied for a human to look at, when set.
ARTIFACTS_ENV = "EBPF_TEST_SCREENSHOTS"

# Appended to the page: runs after the page's own script, so it sees the first paint's layout.
FIRST_PAINT_JS = """
(function () {
  function byId(id, what, none) {
    var el = document.getElementById(id);
    return el ? el[what] : none;
  }
  var out = { scrolled: window.scrollY + byId('main', 'scrollTop', 0),
              width: window.innerWidth, height: window.innerHeight,
              loadedMs: performance.now(), frames: [],
              status: byId('status', 'textContent', '') };
  var c = document.getElementById('chart').getBoundingClientRect();
  out.chart = { x: c.left, y: c.top, w: c.width, h: c.height };
  // Every rectangle first, then the hit tests. A hit test walks the frames (50 ms each among
  // 50,000 of them): only for frames on screen wide enough for their label.
  var els = Array.prototype.slice.call(document.querySelectorAll('#chart .f'));
  var rects = els.map(function (el) { return el.getBoundingClientRect(); });
  els.forEach(function (el, i) {
    var r = rects[i];
    var seen = r.width >= 28 && r.bottom > 0 && r.top < window.innerHeight;
    var hit = seen && document.elementFromPoint(r.left + r.width / 2, r.top + r.height / 2);
    out.frames.push({ label: el.textContent, x: r.left, y: r.top, w: r.width, h: r.height,
                      narrow: el.classList.contains('narrow'), anc: el.classList.contains('anc'),
                      hit: hit === el });
  });
  var pre = document.createElement('pre');
  pre.id = 'first-paint';
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
})();
"""


def chromium_or_skip() -> str:
    if os.access(CHROMIUM, os.X_OK):
        return CHROMIUM
    found = shutil.which("chromium")
    if found:
        return found
    skip_or_fail("chromium (installed by `make setup`) is not installed")


def run(exe: str, page: Path, profile_dir: Path, *, fragment: str = "",
        size: tuple[int, int] = (1400, 900), screenshot: Path | None = None) -> str:
    """--dump-dom (the DOM after load, returned) or --screenshot=PATH of file://PAGE."""
    mode = f"--screenshot={screenshot}" if screenshot else "--dump-dom"
    res = subprocess.run(
        [exe, *FLAGS, f"--user-data-dir={profile_dir}", f"--window-size={size[0]},{size[1]}",
         mode, f"file://{page}{fragment}"],
        capture_output=True, text=True, timeout=180,
    )
    assert res.returncode == 0, res.stderr[-2000:]
    return res.stdout


def with_script(page: str, script: str) -> str:
    return page.replace("</body>", f"<script>{script}</script></body>")


def element_text(dom: str, element_id: str) -> str:
    m = re.search(rf'<pre id="{element_id}">(.*?)</pre>', dom, re.S)
    assert m, f"#{element_id} not in the DOM: the page's script did not run to the end"
    return html.unescape(m.group(1))


@dataclass
class FirstPaint:
    info: dict  # what FIRST_PAINT_JS reported
    png: Path

    def frames(self, label: str) -> list[dict]:
        return [f for f in self.info["frames"] if f["label"] == label and not f["anc"]]

    def on_screen(self, frame: dict) -> bool:
        """Inside the window, not covered (nor scrolled out of its box), and wide enough for
        its label."""
        return (frame["hit"] and frame["x"] >= 0
                and frame["y"] >= 0 and frame["x"] + frame["w"] <= self.info["width"] + 0.5
                and frame["y"] + frame["h"] <= self.info["height"] and not frame["narrow"])


def first_paint(exe: str, page: str, tmp: Path, *, fragment: str = "", name: str = "flame",
                size: tuple[int, int] = (1400, 900)) -> FirstPaint:
    plain = tmp / f"{name}.html"
    plain.write_text(page, encoding="utf-8")
    png = tmp / f"{name}.png"
    run(exe, plain, tmp / f"{name}-profile-1", fragment=fragment, size=size, screenshot=png)
    probed = tmp / f"{name}-probe.html"
    probed.write_text(with_script(page, FIRST_PAINT_JS), encoding="utf-8")
    dom = run(exe, probed, tmp / f"{name}-profile-2", fragment=fragment, size=size)
    if os.environ.get(ARTIFACTS_ENV):
        dest = Path(os.environ[ARTIFACTS_ENV])
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, dest / png.name)
    return FirstPaint(json.loads(element_text(dom, "first-paint")), png)


def png_size(path: Path) -> tuple[int, int]:
    width, height = struct.unpack(">II", path.read_bytes()[16:24])  # IHDR comes first
    return width, height


def png_pixel(path: Path, x: int, y: int) -> tuple[int, int, int]:
    """RGB at (x, y) of an 8-bit, non-interlaced RGB or RGBA PNG (what Chromium writes)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat, width = 8, b"", 0
    height = depth = ctype = 0
    while pos < len(data):
        (length,), kind = struct.unpack(">I", data[pos:pos + 4]), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height, depth, ctype = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    assert depth == 8 and ctype in (2, 6), (depth, ctype)
    bpp = 4 if ctype == 6 else 3
    raw, stride = zlib.decompress(idat), width * bpp
    prev = bytearray(stride)
    for row in range(y + 1):
        base = row * (stride + 1)
        ftype, line = raw[base], bytearray(raw[base + 1:base + 1 + stride])
        for i in range(stride):  # PNG spec, section 9: filter types 0-4
            a = line[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xFF
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xFF
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif ftype == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                pred = a if pa <= pb and pa <= pc else b if pb <= pc else c
                line[i] = (line[i] + pred) & 0xFF
        prev = line
    assert y < height and x < width
    return tuple(prev[x * bpp:x * bpp + 3])  # type: ignore[return-value]


def page_data(page: str) -> dict:
    """The profile JSON a page embeds (the html sink's to_data)."""
    m = re.search(r'<script type="application/json" id="profile-data">(.*?)</script>', page,
                  re.S)
    assert m, "no embedded profile data"
    return json.loads(m.group(1))


def widest_frames(data: dict, k: int) -> list[tuple[str, int]]:
    """(label, samples) of the k widest frames below the root of the all-windows call tree,
    merging the windows' trees by path of name indexes, as the page does."""
    totals: dict[tuple[int, ...], int] = {}
    for window in data["windows"]:
        flat, path = window["nodes"], []
        for i in range(3, len(flat), 3):
            name, total, depth = flat[i:i + 3]
            del path[depth - 1:]
            path.append(name)
            key = tuple(path)
            totals[key] = totals.get(key, 0) + total
    top = sorted(totals.items(), key=lambda kv: -kv[1])[:k]
    return [(data["names"][p[-1]][0], t) for p, t in top]
