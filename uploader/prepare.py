"""Window -> /ingest requests: name, limits, body encoding."""

from __future__ import annotations

import logging

from symbolizer.model import Profile
from uploader.client import IngestRequest
from uploader.limits import MAX_STACKS, split_stacks, truncate_stacks
from uploader.names import check_labels, merge_labels, profile_name
from uploader.options import UploadOptions
from uploader.windows import Window

log = logging.getLogger("ebpf-upload")


def build_requests(w: Window, opts: UploadOptions) -> list[IngestRequest]:
    labels = merge_labels(opts.tags, w.labels)
    check_labels(labels, "labels of window" if w.labels else "--tag")
    name = profile_name(opts.application_name, labels)
    stacks, truncated = truncate_stacks(w.stacks)
    if truncated:
        log.warning("%d stack(s) in window %s were deeper than 1,000 frames or longer than "
                    "64 KiB; their middle frames were replaced by '[truncated N frames]'",
                    truncated, name)
    chunks = split_stacks(stacks) if stacks else []
    if len(chunks) > 1:
        log.info("window %s has %d unique stacks; sent as %d uploads (servers take 16,000 "
                 "per upload and sum uploads of the same window)", name, len(stacks),
                 len(chunks))
    # Pyroscope reads from/until as Unix seconds; 19 digits would be read as nanoseconds,
    # but seconds are what every server version and the agent use.
    params = (("name", name), ("from", str(w.from_ns // 1_000_000_000)),
              ("until", str(-(-w.until_ns // 1_000_000_000))), ("format", opts.format),
              ("sampleRate", str(w.sample_rate)), ("spyName", opts.spy_name),
              ("units", "samples"), ("aggregationType", "sum"))
    out = []
    if opts.format == "pprof" and w.profile is not None:
        # From a recording: pprof with mappings (build IDs) and location addresses.
        from symbolizer.sinks.pprof import profile_to_pprof_bytes

        items = list(w.profile.stacks.items())
        for i in range(0, max(len(items), 1), MAX_STACKS):
            part = Profile(w.profile.start_ns, w.profile.end_ns, w.profile.sample_rate,
                           w.profile.labels, dict(items[i:i + MAX_STACKS]))
            out.append(IngestRequest(params, profile_to_pprof_bytes(part)))
        return out
    for chunk in chunks:
        if opts.format == "pprof":
            from uploader.pprof import encode_pprof  # only then load the symbolizer's sink

            body = encode_pprof(chunk, sample_rate=w.sample_rate, from_ns=w.from_ns,
                                until_ns=w.until_ns)
        else:
            body = "".join(f"{s} {c}\n" for s, c in chunk.items()).encode()
        out.append(IngestRequest(params, body))
    return out
