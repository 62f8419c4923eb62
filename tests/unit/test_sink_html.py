"""html sink: rendered by headless Chromium (Debian's /usr/bin/chromium), not by a mock.

The page builds its frame elements in JavaScript, so finding them in `--dump-dom` proves the
script ran. Interactions (hover, click, reset) are driven by a script the test appends to the
page, which writes what it saw into the DOM.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from html.parser import HTMLParser

import pytest
from test_sink_common import (
    MAIN,
    RUN,
    START_NS,
    WINDOW_NS,
    root,
    self_and_total,
    synthetic_profiles,
)

from symbolizer.model import Frame, Profile
from symbolizer.sinks import html

CHROMIUM = "/usr/bin/chromium"


class _Dom(HTMLParser):
    """Frames (div.f) with their text and style, every tag seen, and elements by id."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.by_id: dict[str, str] = {}
        self._open: list[tuple[str, dict[str, str]]] = []

    def handle_starttag(self, tag, attrs):
        a = {k: v or "" for k, v in attrs}
        self.tags.append(tag)
        self._open.append((tag, {**a, "_text": ""}))

    def handle_endtag(self, tag):
        while self._open:
            t, a = self._open.pop()
            if self._open:
                self._open[-1][1]["_text"] += a["_text"]
            if "f" in a.get("class", "").split() and t == "div":
                self.frames.append(a)
            if "id" in a:
                self.by_id[a["id"]] = a["_text"]
            if t == "tag" or t == tag:
                break

    def handle_data(self, data):
        if self._open:
            self._open[-1][1]["_text"] += data


def _px(style: str, prop: str) -> float:
    for part in style.split(";"):
        k, _, v = part.partition(":")
        if k.strip() == prop:
            return float(v.strip().removesuffix("px"))
    raise AssertionError(f"{prop} not in {style!r}")


@pytest.fixture
def browser(tmp_path):
    if not os.access(CHROMIUM, os.X_OK) and shutil.which("chromium") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("chromium is missing; scripts/setup.sh installs it")
        pytest.skip("chromium is not installed")
    exe = CHROMIUM if os.access(CHROMIUM, os.X_OK) else str(shutil.which("chromium"))

    def render(page: str, fragment: str = "", extra_script: str = "") -> _Dom:
        if extra_script:
            page = page.replace("</body>", f"<script>{extra_script}</script></body>")
        path = tmp_path / "flame.html"
        path.write_text(page, encoding="utf-8")
        res = subprocess.run(
            [exe, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
             "--no-first-run", "--disable-background-networking", "--disable-component-update",
             "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}",
             "--window-size=1200,800", "--dump-dom", f"file://{path}{fragment}"],
            capture_output=True, text=True, timeout=120,
        )
        assert res.returncode == 0, res.stderr[-2000:]
        dom = _Dom()
        dom.feed(res.stdout)
        return dom

    return render


def _page(profiles) -> str:
    buf = io.BytesIO()
    html.write(profiles, buf)
    return buf.getvalue().decode("utf-8")


def test_chromium_builds_a_frame_per_function_with_widths_proportional_to_samples(browser):
    profiles = synthetic_profiles()
    dom = browser(_page(profiles))
    texts = {f["_text"] for f in dom.frames}
    _, cum = self_and_total(profiles)
    # Every function wide enough to draw (>= 0.5 px of ~1176 px) has an element.
    total = sum(p.total for p in profiles)
    assert {n for n, c in cum.items() if c / total > 0.01} <= texts
    assert "all" in texts
    widths = {f["_text"]: _px(f["style"], "width") for f in dom.frames}
    full = widths["all"]
    assert full > 1000
    for name in ("lib_beta", "alpha", "gamma_fn", "run_rounds"):
        assert widths[name] == pytest.approx(full * cum[name] / total, abs=0.2), name


@pytest.mark.parametrize(("term", "function", "elements"),
                         [("BETA", "lib_beta", 1), ("recurse", "recurse", 3)])
def test_search_in_fragment_highlights_and_reports_the_matched_share(
        browser, term, function, elements):
    # GIVEN a search term in the URL fragment (recurse: three nested matching frames)
    profiles = synthetic_profiles()
    _, cum = self_and_total(profiles)
    total = sum(p.total for p in profiles)
    # WHEN Chromium opens the page
    dom = browser(_page(profiles), f"#search={term}")
    # THEN the matching frames are highlighted and each sample is counted once
    matched = [f["_text"] for f in dom.frames if "match" in f["class"].split()]
    assert matched == [function] * elements
    share = 100 * cum[function] / total
    assert dom.by_id["matched"] == f"Matched: {share:.2f}% ({cum[function]} samples)"


def test_hover_tooltip_click_zoom_and_reset(browser):
    profiles = synthetic_profiles()
    flat, cum = self_and_total(profiles)
    total = sum(p.total for p in profiles)
    script = """
    (function () {
      function frame(name) {
        return Array.prototype.find.call(document.querySelectorAll('.f'),
          function (e) { return e.textContent === name && !e.classList.contains('anc'); });
      }
      var out = {};
      var alpha = frame('alpha');
      alpha.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: 50, clientY: 50}));
      out.tooltip = document.getElementById('tooltip').innerText;
      out.tooltipShown = document.getElementById('tooltip').style.display;
      frame('lib_beta').click();
      out.chart = document.getElementById('chart').clientWidth;
      out.zoomedWidth = parseFloat(frame('lib_beta').style.width);
      out.alphaAfterZoom = frame('alpha') ? 'present' : 'absent';
      out.ancestors = Array.prototype.map.call(document.querySelectorAll('.f.anc'),
        function (e) { return e.textContent; });
      out.hash = location.hash;
      document.dispatchEvent(new KeyboardEvent('keydown', {key: 'Escape'}));
      out.afterEscape = parseFloat(frame('lib_beta').style.width);
      frame('main').click();
      document.getElementById('reset').click();
      out.afterReset = parseFloat(frame('main').style.width);
      var pre = document.createElement('pre');
      pre.id = 'test-result';
      pre.textContent = JSON.stringify(out);
      document.body.appendChild(pre);
    })();
    """
    dom = browser(_page(profiles), extra_script=script)
    out = json.loads(dom.by_id["test-result"])
    assert out["tooltipShown"] == "block"
    assert "alpha" in out["tooltip"]
    assert f"{cum['alpha']} samples, {100 * cum['alpha'] / total:.2f}% of all" in out["tooltip"]
    assert f"self: {flat['alpha']} samples" in out["tooltip"]
    # Zoomed on lib_beta: it spans the chart, its siblings are gone, its callers are dimmed.
    assert out["zoomedWidth"] == pytest.approx(out["chart"], abs=0.2)
    assert out["alphaAfterZoom"] == "absent"
    assert out["ancestors"] == ["run_rounds", "main", "workload", "all"]
    assert out["hash"].startswith("#zoom=")
    full_beta = out["chart"] * cum["lib_beta"] / total
    assert out["afterEscape"] == pytest.approx(full_beta, abs=0.2)
    assert out["afterReset"] == pytest.approx(out["chart"] * cum["main"] / total, abs=0.2)


HOSTILE = [
    "</script><img src=x onerror=\"document.title='pwned'\">",
    "<img src=y onerror=document.title='pwned2'>",
    "a&amp;b <!-- \u2028 \"quoted\" 'single' `tick` ${x}",
]


def test_hostile_symbol_names_stay_text(browser):
    p = Profile(start_ns=START_NS, end_ns=START_NS + WINDOW_NS, sample_rate=100)
    for i, name in enumerate(HOSTILE):
        p.add((root("workload"), MAIN, RUN, Frame(name=name, address=0x1000 + i)), 10 + i)
    page = _page([p])
    # Nothing of the names reaches the file as markup...
    assert "<img" not in page
    assert page.count("</script>") == 2
    dom = browser(page)
    # ...nor the DOM: no element was made from a name, the title is the page's own, and each
    # name is shown exactly as it is.
    assert "img" not in dom.tags
    assert "pwned" not in dom.by_id["title"]
    texts = {f["_text"] for f in dom.frames}
    assert set(HOSTILE) <= texts


def test_empty_profile_says_so(browser):
    dom = browser(_page([]))
    assert dom.frames == []
    assert dom.by_id["empty"] == "No samples in this profile."


def test_embedded_json_has_no_markup_characters():
    text = html._script_safe_json({"names": [["</script>&<!--", 0, None, None, 0]]})
    assert not set("<>&") & set(text)
    assert json.loads(text)["names"][0][0] == "</script>&<!--"


def test_tree_is_flat_preorder_with_totals():
    profiles = synthetic_profiles()
    data = html.to_data(profiles)
    nodes = data["nodes"]
    triples = [nodes[i:i + 3] for i in range(0, len(nodes), 3)]
    assert triples[0] == [-1, sum(p.total for p in profiles), 0]
    # Each node's total is at least the sum of its children's (the rest is self time).
    for i, (_, t, d) in enumerate(triples):
        kids = 0
        for _, t2, d2 in triples[i + 1:]:
            if d2 <= d:
                break
            if d2 == d + 1:
                kids += t2
        assert kids <= t
