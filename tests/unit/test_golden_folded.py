"""The folded text ebpf-symbolize writes and ebpf-upload sends, against golden files: a change
of format shows as a diff of tests/golden/ (UPDATE_GOLDEN=1 rewrites them)."""

from __future__ import annotations

import io

from profiles.model import Frame, FrameKind, Profile
from symbolizer.sinks import SinkOptions
from symbolizer.sinks.folded import FoldedSink
from tests.helpers.golden import check_golden
from tests.helpers.profiles import profile
from tests.helpers.sinks import synthetic_profiles
from uploader.options import UploadOptions
from uploader.prepare import build_requests


def test_folded_stream_of_the_synthetic_profiles():
    out = io.BytesIO()
    sink = FoldedSink(out, SinkOptions(stream=True))
    for p in synthetic_profiles():
        sink.write_profile(p)
        sink.end_window()
    sink.close()
    check_golden("synthetic.folded", out.getvalue().decode())


def test_folded_upload_body_with_escapes_and_a_truncated_stack():
    p = profile({"#hidden;main;leaf": 2, "a;b;c": 1}, labels={"service_name": "s"})
    p.add((Frame("deep", FrameKind.ROOT), *(Frame(f"f{i}") for i in range(1200))), 3)
    p.add((Frame("semi;colon", FrameKind.ROOT), Frame("new\nline")), 1)
    assert isinstance(p, Profile)
    (req,) = build_requests(p, UploadOptions(application_name="g"))
    check_golden("upload-body.folded", req.body.decode())
