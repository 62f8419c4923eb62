"""Window -> upload requests (/ingest or the push API): name, limits, body encoding.

The limits are applied to the Profile's frames first; every body format is then encoded from
the same truncated and split Profiles, so what the warning says holds for each.
"""

from __future__ import annotations

import logging

from profiles.folded import folded_lines
from profiles.model import Profile
from uploader.client import IngestRequest
from uploader.limits import split_profile, truncate_profile
from uploader.names import check_labels, merge_labels, profile_name
from uploader.options import UploadOptions
from uploader.push import CONTENT_TYPE, push_body

log = logging.getLogger("ebpf-upload")


def encode_body(p: Profile, fmt: str) -> bytes:
    if fmt == "pprof":
        # Frames from a recording, or from folded text with its frames lines
        # (profiles/folded_frames.py), keep their mappings (build IDs) and addresses; frames
        # of other folded text have names only.
        from symbolizer.sinks.pprof import profile_to_pprof_bytes  # loaded only for pprof

        return profile_to_pprof_bytes(p)
    # Unescaped: the server reads every line as a stack (no comments), so a process named
    # `#x` is sent as it is named.
    return "".join(line + "\n" for line in folded_lines(p)).encode("utf-8", "replace")


def build_requests(w: Profile, opts: UploadOptions) -> list[IngestRequest]:
    labels = merge_labels(opts.tags, w.labels)
    check_labels(labels, "labels of window" if w.labels else "--tag")
    name = profile_name(opts.application_name, labels)
    within, truncated = truncate_profile(w)
    if truncated:
        log.warning("%d stack(s) in window %s were deeper than 1,000 frames or longer than "
                    "64 KiB; their middle frames were replaced by '[truncated N frames]'",
                    truncated, name)
    chunks = split_profile(within)
    if len(chunks) > 1:
        log.info("window %s has %d unique stacks; sent as %d uploads (servers take 16,000 "
                 "per upload and sum uploads of the same window)", name, len(within.stacks),
                 len(chunks))
    if opts.protocol == "push":
        # from/until only name the window in messages and the spool: the server reads the
        # pprof's own time_nanos/duration_nanos
        from symbolizer.sinks.pprof import encode_profiles

        where = (("name", name), ("from", str(w.start_ns // 1_000_000_000)),
                 ("until", str(-(-w.end_ns // 1_000_000_000))))
        return [IngestRequest(where, push_body(opts.application_name, labels,
                                               encode_profiles([c])),
                              CONTENT_TYPE, "push") for c in chunks]
    # Pyroscope reads from/until as Unix seconds; 19 digits would be read as nanoseconds,
    # but seconds are what every server version and the agent use.
    params = (("name", name), ("from", str(w.start_ns // 1_000_000_000)),
              ("until", str(-(-w.end_ns // 1_000_000_000))), ("format", opts.format),
              ("sampleRate", str(w.sample_rate)), ("spyName", opts.spy_name),
              ("units", "samples"), ("aggregationType", "sum"))
    return [IngestRequest(params, encode_body(c, opts.format)) for c in chunks]
