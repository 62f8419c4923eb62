"""html sink: rendered by headless Chromium (Debian's /usr/bin/chromium), not by a mock.

The page builds its frame elements in JavaScript, so finding them in `--dump-dom` proves the
script ran. Interactions (hover, click, reset) are driven by a script the test appends to the
page, which writes what it saw into the DOM. First-paint tests take a 1400x900 screenshot
(tests/chromium.py; set EBPF_TEST_SCREENSHOTS=DIR to keep the PNGs) and read the layout the
browser computed.
"""

from __future__ import annotations

import io
import json
import re
import time
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from urllib.parse import quote

import pytest

from profiles.model import Frame, Profile
from symbolizer.sinks import html
from tests import chromium
from tests.helpers.sinks import (
    EXE,
    EXE_BID,
    LIB,
    LIB_BID,
    MAIN,
    RUN,
    START_NS,
    WINDOW_NS,
    root,
    self_and_total,
    synthetic_profiles,
)
from tests.helpers.system_profile import many_stacks, system_wide


class _Dom(HTMLParser):
    """Frames (div.f) with their text, style and chart (`_in`: the id of the element holding
    them), every tag seen, texts by tag, and elements by id."""

    def __init__(self) -> None:
        super().__init__()
        self.frames: list[dict[str, str]] = []
        self.tags: list[str] = []
        self.by_id: dict[str, str] = {}
        self.by_tag: dict[str, list[str]] = {}
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
                a["_in"] = self._open[-1][1].get("id", "") if self._open else ""
                self.frames.append(a)
            self.by_tag.setdefault(t, []).append(a["_text"])
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
def exe():
    return chromium.chromium_or_skip()


@pytest.fixture
def browser(exe, tmp_path):
    def render(page: str, fragment: str = "", extra_script: str = "") -> _Dom:
        if extra_script:
            page = chromium.with_script(page, extra_script)
        path = tmp_path / "flame.html"
        path.write_text(page, encoding="utf-8")
        dom = _Dom()
        dom.feed(chromium.run(exe, path, tmp_path / "profile", fragment=fragment,
                              size=(1200, 800)))
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
      frame('entry_SYSCALL_64_after_hwframe').dispatchEvent(
        new MouseEvent('mousemove', {bubbles: true, clientX: 60, clientY: 60}));
      out.kernelTooltip = document.getElementById('tooltip').innerText;
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
      frame('alpha').dispatchEvent(new MouseEvent('dblclick', {bubbles: true}));
      out.sandwichOf = document.getElementById('sw-name').textContent;
      out.hashAfterDblclick = location.hash;
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
    # The object each frame comes from (Frame.object, with its build ID; perf's name for the
    # kernel, which has no object path).
    assert f"object: {EXE} (build ID {EXE_BID})" in out["tooltip"]
    assert "object: [kernel.kallsyms]" in out["kernelTooltip"]
    # Zoomed on lib_beta: it spans the chart, its siblings are gone, its callers are dimmed.
    assert out["zoomedWidth"] == pytest.approx(out["chart"], abs=0.2)
    assert out["alphaAfterZoom"] == "absent"
    assert out["ancestors"] == ["run_rounds", "main", "workload", "all"]
    assert out["hash"].startswith("#zoom=")
    full_beta = out["chart"] * cum["lib_beta"] / total
    assert out["afterEscape"] == pytest.approx(full_beta, abs=0.2)
    assert out["afterReset"] == pytest.approx(out["chart"] * cum["main"] / total, abs=0.2)
    # A double-click opens the frame's callers and callees.
    assert out["sandwichOf"] == "alpha"
    assert out["hashAfterDblclick"] == "#view=functions&fn=alpha"


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
    # The same in the function table and the sandwich of a hostile name.
    dom = browser(page, "#view=functions&fn=" + quote(HOSTILE[0]))
    assert "img" not in dom.tags and "pwned" not in dom.by_id["title"]
    assert set(HOSTILE) <= set(dom.by_tag["td"])
    assert dom.by_id["sw-name"] == HOSTILE[0]


def test_empty_profile_says_so(browser):
    dom = browser(_page([]))
    assert dom.frames == []
    assert dom.by_id["empty"] == "No samples in this profile."


def test_embedded_json_has_no_markup_characters():
    text = html._script_safe_json({"names": [["</script>&<!--", 0, None, None, 0]]})
    assert not set("<>&") & set(text)
    assert json.loads(text)["names"][0][0] == "</script>&<!--"


def test_tree_is_flat_preorder_with_totals_one_tree_per_window():
    profiles = synthetic_profiles()
    # A second label set in the first window: merged into that window's tree.
    extra = Profile(start_ns=START_NS, end_ns=START_NS + WINDOW_NS, sample_rate=100,
                    labels={"pid": "7"})
    extra.add((root("other"), MAIN), 9)
    data = html.to_data([*profiles, extra])
    assert [w["label"] for w in data["windows"]] == ["08:00:00-08:00:10", "08:00:10-08:00:20"]
    assert data["windows"][0]["startMs"] == START_NS // 1_000_000
    for window, total in zip(data["windows"], [profiles[0].total + 9, profiles[1].total],
                             strict=True):
        nodes = window["nodes"]
        triples = [nodes[i:i + 3] for i in range(0, len(nodes), 3)]
        assert triples[0] == [-1, total, 0]
        # Each node's total is at least the sum of its children's (the rest is self time).
        for i, (_, t, d) in enumerate(triples):
            kids = 0
            for _, t2, d2 in triples[i + 1:]:
                if d2 <= d:
                    break
                if d2 == d + 1:
                    kids += t2
            assert kids <= t


def test_names_carry_their_object():
    data = html.to_data(synthetic_profiles())
    objects = {e[0]: data["objects"][e[5]] if e[5] >= 0 else None for e in data["names"]}
    assert objects["lib_beta"] == [LIB, LIB_BID]
    assert objects["alpha"] == [EXE, EXE_BID]
    assert objects["__x64_sys_clock_gettime"] == ["[kernel.kallsyms]", None]
    assert objects["workload"] is None  # the process-name root frame has no object


# --- at system scale: what the first screen shows (1400x900) ---------------------------------

ROOT_GREY = (209, 209, 209)  # the root's colour, hsl(0, 0%, 82%)
_HIDDEN = re.compile(r"^([\d,]+) frames? narrower than 0\.1% hidden \(([\d,]+) samples?, ")


def _towers(profiles: list[Profile]) -> tuple[int, int]:
    """Frames and samples of the small processes' towers (each stack is its own subtree)."""
    frames = samples = 0
    for p in profiles:
        for stack, count in p.stacks.items():
            if stack[0].name.startswith("worker-"):
                frames += len(stack)
                samples += count
    return frames, samples


def test_system_wide_first_paint_shows_the_root_and_the_widest_frames(exe, tmp_path):
    # GIVEN a system-wide profile: 3 busy processes and 450 processes sampled a few times
    # with 87-127-frame stacks (wider than half a pixel, narrower than 0.1%)
    profiles = system_wide()
    page = _page(profiles)
    # WHEN Chromium opens it at 1400x900
    fp = chromium.first_paint(exe, page, tmp_path, name="system-wide")
    info = fp.info
    # THEN the root and the three widest frames are on the first screen, labelled, with the
    # widths of their samples, and nothing needed scrolling
    assert info["scrolled"] == 0
    (root_frame,) = fp.frames("all")
    assert fp.on_screen(root_frame), root_frame
    full = root_frame["w"]
    total = sum(p.total for p in profiles)
    for label, samples in chromium.widest_frames(chromium.page_data(page), 3):
        assert any(fp.on_screen(f) and f["w"] == pytest.approx(full * samples / total, abs=0.6)
                   for f in fp.frames(label)), (label, fp.frames(label))
    # ...the whole chart fits on the screen: the towers are pruned, and the status says how
    # much (every tower frame, and at least their samples)
    assert info["chart"]["y"] + info["chart"]["h"] <= info["height"]
    assert not [f for f in info["frames"] if f["label"].startswith("worker-")]
    m = _HIDDEN.match(info["status"])
    assert m, info["status"]
    tower_frames, tower_samples = _towers(profiles)
    assert int(m[1].replace(",", "")) >= tower_frames
    assert int(m[2].replace(",", "")) >= tower_samples
    # ...and the screenshot shows the root where the layout put it.
    x, y = int(root_frame["x"]) + 2, int(root_frame["y"]) + 2
    assert chromium.png_pixel(fp.png, x, y) == pytest.approx(ROOT_GREY, abs=3), fp.png


def test_root_at_the_bottom_is_scrolled_into_view(exe, tmp_path):
    # GIVEN the towers drawn (a 0.01 px minimum: a chart far taller than the window) with the
    # root at the bottom, as flamegraph.pl draws it
    page = _page(system_wide(small_processes=20))
    fp = chromium.first_paint(exe, page, tmp_path, fragment="#orient=flame&minwidth=0.01px",
                              name="root-at-bottom")
    info = fp.info
    assert info["chart"]["h"] > 2 * info["height"]
    # THEN the chart opens scrolled down to the root, which is on screen
    (root_frame,) = fp.frames("all")
    assert info["scrolled"] > 0
    assert root_frame["hit"] and 0 <= root_frame["y"] <= info["height"] - root_frame["h"]
    # In the screenshot the window is taller (tests/chromium.py): the root, at the bottom of
    # the chart box, is lower by the difference.
    lower = chromium.png_size(fp.png)[1] - info["height"]
    x, y = int(root_frame["x"]) + 2, int(root_frame["y"]) + 2 + lower
    assert chromium.png_pixel(fp.png, x, y) == pytest.approx(ROOT_GREY, abs=3), fp.png


def test_inverted_view_starts_from_the_leaves(browser):
    # GIVEN the synthetic profile; WHEN it opens on the inverted view (no pruning)
    profiles = synthetic_profiles()
    flat, _ = self_and_total(profiles)
    total = sum(p.total for p in profiles)
    hover = """
    var el = Array.prototype.find.call(document.querySelectorAll('#chart .f'),
      function (e) { return e.textContent === 'lib_beta' && e.style.top === '18px'; });
    el.dispatchEvent(new MouseEvent('mousemove', {bubbles: true, clientX: 50, clientY: 50}));
    var pre = document.createElement('pre');
    pre.id = 'tip';
    pre.textContent = document.getElementById('tooltip').innerText;
    document.body.appendChild(pre);
    """
    dom = browser(_page(profiles), "#view=inverted&minwidth=0.1px", extra_script=hover)
    frames = [f for f in dom.frames if f["_in"] == "chart"]
    full = next(_px(f["style"], "width") for f in frames if f["_text"] == "all")
    # THEN the first row holds every function with self time, as wide as its self samples
    row1 = {f["_text"]: _px(f["style"], "width") for f in frames if _px(f["style"], "top") == 18}
    assert set(row1) == set(flat)
    for name, self_samples in flat.items():
        assert row1[name] == pytest.approx(full * self_samples / total, abs=0.2), name
    # ...and below a leaf come its callers: lib_beta is called by run_rounds only.
    beta_x = next(_px(f["style"], "left") for f in frames
                  if f["_text"] == "lib_beta" and _px(f["style"], "top") == 18)
    row2 = [f for f in frames if _px(f["style"], "top") == 36
            and _px(f["style"], "left") == pytest.approx(beta_x, abs=0.2)]
    assert [f["_text"] for f in row2] == ["run_rounds"]
    assert _px(row2[0]["style"], "width") == pytest.approx(row1["lib_beta"], abs=0.2)
    # Its tooltip has the samples, and no "self" (a remainder there is not self time).
    assert f"{flat['lib_beta']} samples" in dom.by_id["tip"]
    assert "self:" not in dom.by_id["tip"]


def test_function_table_and_sandwich(browser):
    # GIVEN the synthetic profile; WHEN it opens on the functions view, for run_rounds
    profiles = synthetic_profiles()
    flat, cum = self_and_total(profiles)
    total = sum(p.total for p in profiles)
    dom = browser(_page(profiles), "#view=functions&fn=run_rounds&minwidth=0.1px")
    # THEN the table lists every function with its self and total samples (a recursive
    # function once per stack), the most self time first
    cells = dom.by_tag["td"]
    rows = [cells[i:i + 6] for i in range(0, len(cells), 6)]
    got = {r[4]: (int(r[0].replace(",", "")), int(r[2].replace(",", ""))) for r in rows}
    assert got == {name: (flat[name], cum[name]) for name in cum}
    assert rows[0][4] == "lib_beta" and rows[0][1] == f"{100 * flat['lib_beta'] / total:.2f}%"
    assert next(r[5] for r in rows if r[4] == "lib_beta") == LIB.rsplit("/", 1)[1]
    # ...and the sandwich of run_rounds: its callers above it, its callees below, each as
    # wide as the samples that pass through run_rounds.
    callers = {f["_text"]: _px(f["style"], "width") for f in dom.frames if f["_in"] == "callers"}
    callees = {f["_text"]: _px(f["style"], "width") for f in dom.frames if f["_in"] == "callees"}
    assert set(callers) == {"run_rounds", "main", "workload"}
    assert callers["main"] == pytest.approx(callers["run_rounds"], abs=0.2)
    full = callees["run_rounds"]
    assert set(callees) == {"run_rounds", "alpha", "lib_beta", "gamma_fn", "helper",
                            "inner_helper", "libfixture.so+0x2a0",
                            "entry_SYSCALL_64_after_hwframe", "__x64_sys_clock_gettime"}
    for name in ("alpha", "lib_beta", "gamma_fn"):
        assert callees[name] == pytest.approx(full * cum[name] / cum["run_rounds"], abs=0.2)


def test_window_selector_shows_one_window(browser):
    # GIVEN two windows; WHEN the page opens on the second
    profiles = synthetic_profiles()
    dom = browser(_page(profiles), "#window=2")
    # THEN the selector offers all windows and each one, and the chart shows the second only
    assert dom.by_tag["option"][:3] == [
        "All windows (2)",
        f"1: 08:00:00-08:00:10 UTC · {profiles[0].total:,} samples",
        f"2: 08:00:10-08:00:20 UTC · {profiles[1].total:,} samples",
    ]
    widths = {f["_text"]: _px(f["style"], "width") for f in dom.frames if f["_in"] == "chart"}
    assert "gamma_fn" not in widths  # first window only
    assert widths["lib_beta"] == pytest.approx(widths["all"] * 200 / 300, abs=0.2)
    assert dom.by_id["subtitle"].startswith(f"{sum(p.total for p in profiles):,} samples")


def test_svg_export_is_the_chart_with_names_as_text(browser):
    # GIVEN hostile names among ordinary ones
    p = synthetic_profiles()[0]
    for i, name in enumerate(HOSTILE):
        p.add((root("workload"), MAIN, RUN, Frame(name=name, address=0x1000 + i)), 100)
    script = """
    var pre = document.createElement('pre');
    pre.id = 'svg';
    pre.textContent = window.flamegraph.exportSVG();
    document.body.appendChild(pre);
    """
    # WHEN the page exports its SVG
    dom = browser(_page([p]), extra_script=script)
    svg = ET.fromstring(dom.by_id["svg"])
    ns = "{http://www.w3.org/2000/svg}"
    # THEN it is well-formed SVG of rectangles and text only, one group per frame on screen,
    # each titled with its name and object, hostile names kept as text
    assert svg.tag == f"{ns}svg"
    assert {e.tag.removeprefix(ns) for e in svg.iter()} <= {"svg", "g", "rect", "text", "title"}
    assert not [a for e in svg.iter() for a in e.attrib if "href" in a or a.startswith("on")]
    groups = [g for g in svg.iter(f"{ns}g") if g.get("class") == "frame"]
    drawn = [f for f in dom.frames if f["_in"] == "chart"]
    assert len(groups) == len(drawn) > 10
    titles = [g.find(f"{ns}title").text.split("\n") for g in groups]
    assert {t[0] for t in titles} == {f["_text"] for f in drawn}
    assert set(HOSTILE) <= {t[0] for t in titles}
    assert any(t[0] == "lib_beta" and f"object: {LIB} (build ID {LIB_BID})" in t for t in titles)


def test_a_large_profile_stays_small_and_loads(exe, tmp_path):
    # GIVEN 20,000 unique stacks over 300 processes (docs/performance.md has 100,000)
    profiles = many_stacks(20_000)
    t0 = time.perf_counter()
    page = _page(profiles)
    build_s = time.perf_counter() - t0
    # THEN the page is a few hundred bytes per unique stack and opens with its chart
    size = len(page.encode())
    assert size < 20_000 * 300, size
    fp = chromium.first_paint(exe, page, tmp_path, name="20k-stacks")
    assert fp.on_screen(fp.frames("all")[0])
    print(f"20k stacks: {size:,} bytes, built in {build_s:.1f} s, "
          f"script done {fp.info['loadedMs']:.0f} ms after navigation")
    assert fp.info["loadedMs"] < 30_000


@pytest.mark.parametrize(("args", "windows"), [([], 3), (["--window", "2s"], 2)])
def test_symbolize_gives_the_page_each_drain_window(fixture_bins, tmp_path, args, windows):
    # GIVEN a recording of three 1-s drain windows
    from cli_common.command import run
    from symbolizer.cli import symbolize_main
    from tests.helpers.crafted import crafted_recording

    lib = fixture_bins / "libfixture.so"
    rec = crafted_recording(tmp_path / "r.parquet", path=str(lib), build_id=None,
                            elf_addr=0x1000, layout_of=lib, windows=3)
    out = tmp_path / "flame.html"
    # WHEN it is symbolized to HTML (other formats merge the run unless --window says)
    rc = run("ebpf-symbolize", symbolize_main,
             [str(rec), "--format", "html", "--out", str(out), "--cache-dir",
              str(tmp_path / "c"), *args])
    # THEN the page holds one tree per drain window, or per --window span
    assert rc == 0
    data = chromium.page_data(out.read_text(encoding="utf-8"))
    assert len(data["windows"]) == windows
    assert sum(w["nodes"][1] for w in data["windows"]) == 3 * 7
