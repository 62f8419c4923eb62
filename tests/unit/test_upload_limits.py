"""Names, labels and server limits enforced before sending."""

from __future__ import annotations

import pytest

from profiles.model import Frame, FrameKind, Profile
from recording.errors import UsageError
from tests.helpers.profiles import names, profile
from tests.receiver.pprof_decode import pprof_to_folded
from uploader.limits import (
    MAX_DEPTH,
    MAX_LINE_BYTES,
    check_age,
    split_profile,
    truncate_profile,
    truncate_stack,
)
from uploader.names import check_app, check_labels, merge_labels, profile_name
from uploader.options import UploadOptions
from uploader.prepare import build_requests

S = 1_000_000_000


def test_name_syntax():
    assert profile_name("my-app.prod", {"b": "2", "a": "1"}) == "my-app.prod.cpu{a=1,b=2}"
    assert profile_name("x", {}) == "x.cpu{}"


@pytest.mark.parametrize("app", ["my app", "a{b}", "ünï", "a,b", "x.cpu"])
def test_bad_app_names_refused(app):
    with pytest.raises(UsageError):
        check_app(app)


@pytest.mark.parametrize("labels,needle", [
    ({"pod-name": "x"}, "label name"),
    ({"__name__": "x"}, "reserved"),
    ({"k": "a,b"}, "','"),
    ({"k": "a}b"}, "'}'"),
    ({"k": "a=b"}, "'='"),
    ({"k": "v" * 3000}, "2048"),
    ({f"k{i}": "v" for i in range(31)}, "30"),
])
def test_bad_labels_refused_with_reason(labels, needle):
    with pytest.raises(UsageError) as exc:
        check_labels(labels, "--tag")
    assert needle in str(exc.value)


def test_explicit_tag_wins_over_file_label():
    assert merge_labels((("env", "dev"),), {"env": "prod", "pod": "p"}) == {
        "env": "dev", "pod": "p"}


def _stack(text: str) -> tuple[Frame, ...]:
    (stack,) = profile({text: 1}).stacks
    return stack


def _text(stack: tuple[Frame, ...]) -> str:
    return ";".join(f.name for f in stack)


def test_deep_stack_truncated_keeping_root_and_leaves():
    frames = ["comm"] + [f"f{i}" for i in range(1500)]
    t = [f.name for f in truncate_stack(_stack(";".join(frames)), 7)]
    assert len(t) <= MAX_DEPTH
    assert t[0] == "comm" and t[-1] == "f1499" and t[1].startswith("[truncated ")
    dropped = int(t[1].split()[1])
    assert dropped + len(t) - 2 == 1500


def test_long_line_truncated_under_64k():
    frames = ["comm"] + ["x" * 200 + str(i) for i in range(500)]  # ~100 KB line, depth 501
    t = _text(truncate_stack(_stack(";".join(frames)), 12345))
    assert len(t.encode()) + len(" 12345\n") < MAX_LINE_BYTES
    assert t.endswith(frames[-1])
    huge = "comm;" + "y" * 100_000
    assert len(_text(truncate_stack(_stack(huge), 1)).encode()) < MAX_LINE_BYTES


def test_line_length_is_measured_as_folded_writes_names():
    # `;` in a name is written as `:` (one byte each): the stack fits as it is
    (stack,) = profile({"comm;a;b": 1}).stacks
    assert truncate_stack(stack, 1) is stack


def test_truncation_merges_counts_and_reports():
    a = ";".join(["c", *[f"a{i}" for i in range(1200)], "leaf"])
    b = ";".join(["c", *[f"b{i}" for i in range(1200)], "leaf"])
    out, changed = truncate_profile(profile({a: 2, b: 3, "c;ok": 1}))
    assert changed == 2 and out.total == 6
    assert names(out)["c;ok"] == 1


def test_split_by_unique_stacks_keeps_every_count():
    stacks = {f"c;f{i}": i + 1 for i in range(40_001)}
    chunks = split_profile(profile(stacks))
    assert len(chunks) == 3 and all(len(c.stacks) <= 16_000 for c in chunks)
    merged: dict[str, int] = {}
    for c in chunks:
        merged.update(names(c))
        assert (c.start_ns, c.end_ns, c.sample_rate) == (100 * S, 110 * S, 100)
    assert merged == stacks


def test_split_by_bytes():
    stacks = {f"c;{'z' * 1000}{i}": 1 for i in range(5000)}  # ~5 MB of text
    chunks = split_profile(profile(stacks))
    assert len(chunks) >= 2
    assert all(sum(len(f"{k} {v}\n") for k, v in names(c).items()) <= 3 * 1024 * 1024
               for c in chunks)


def test_window_with_many_stacks_becomes_several_requests_of_same_window():
    o = UploadOptions(application_name="a")
    reqs = build_requests(profile({f"c;f{i}": 1 for i in range(20_000)}), o)
    assert len(reqs) == 2
    assert {r.param("from") for r in reqs} == {"100"} and {r.param("until") for r in reqs} == {
        "110"}
    assert sum(r.body.count(b"\n") for r in reqs) == 20_000


def test_request_parameters():
    o = UploadOptions(application_name="a", tags=(("env", "x"),))
    (r,) = build_requests(profile({"c;f": 3}, rate=97, labels={"pod": "p"}), o)
    assert dict(r.params) == {"name": "a.cpu{env=x,pod=p}", "from": "100", "until": "110",
                              "format": "folded", "sampleRate": "97", "spyName": "ebpfspy",
                              "units": "samples", "aggregationType": "sum"}
    assert r.body == b"c;f 3\n"


def _bodies(p: Profile, fmt: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for r in build_requests(p, UploadOptions(application_name="a", format=fmt)):
        if fmt == "pprof":
            got = pprof_to_folded(r.body)
        else:
            got = {k: int(v) for k, _, v in
                   (ln.rpartition(" ") for ln in r.body.decode().splitlines())}
        for k, v in got.items():
            out[k] = out.get(k, 0) + v
    return out


def test_pprof_body_is_truncated_like_folded(caplog):
    """Issue 12: the limits were applied to folded strings only, and a recording's pprof
    body was sent with stacks 1,500 frames deep under a warning that said they were cut."""
    p = Profile(100 * S, 110 * S, 100)
    deep = (Frame("comm", FrameKind.ROOT),
            *(Frame(f"f{i}", address=0x1000 + i, object="/bin/x", build_id="ab", elf_addr=i)
              for i in range(1500)))
    p.add(deep, 3)
    p.add((Frame("comm", FrameKind.ROOT), Frame("shallow", address=0x99, object="/bin/x")), 2)
    folded, pprof = _bodies(p, "folded"), _bodies(p, "pprof")
    assert pprof == folded
    assert max(len(k.split(";")) for k in pprof) <= MAX_DEPTH
    assert sum(pprof.values()) == 5
    assert caplog.text.count("deeper than 1,000 frames") == 2  # one warning per upload


def test_age_limits_explain_retime():
    now = 10_000.0
    check_age(int((now - 600) * S), int((now - 590) * S), allow_old=False, now=now)
    with pytest.raises(UsageError) as exc:
        check_age(int((now - 7200) * S), int((now - 7190) * S), allow_old=False, now=now)
    assert "--retime" in str(exc.value) and "1 hour" in str(exc.value)
    check_age(int((now - 7200) * S), int((now - 7190) * S), allow_old=True, now=now)
    with pytest.raises(UsageError, match="future"):
        check_age(int((now + 3600) * S), int((now + 3610) * S), allow_old=False, now=now)
