"""The committed *_pb2 modules are what `make proto` generates from proto/*.proto, and they
declare the wire contract of pprof and of Pyroscope's push API."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _gen_proto():
    spec = importlib.util.spec_from_file_location("gen_proto", ROOT / "scripts/gen_proto.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_committed_modules_match_the_generator(tmp_path):
    pytest.importorskip("grpc_tools", reason="grpcio-tools is a dev dependency (make setup)")
    written = _gen_proto().generate(tmp_path)
    assert written, "no .proto file under proto/"
    for rel in written:
        committed = ROOT / rel
        assert committed.exists(), f"{rel} is not committed; run `make proto`"
        assert committed.read_bytes() == (tmp_path / rel).read_bytes(), (
            f"{rel} differs from what proto/ generates; run `make proto` and commit")


def test_wire_contract_names_and_field_numbers():
    from profiles.pb import profile_pb2
    from uploader.pb import push_pb2, types_pb2

    def fields(msg):
        return {f.name: (f.number, f.type) for f in msg.DESCRIPTOR.fields}

    fd = profile_pb2.Profile.DESCRIPTOR.fields_by_name
    assert profile_pb2.Profile.DESCRIPTOR.full_name == "perftools.profiles.Profile"
    assert [fd[n].number for n in ("sample_type", "sample", "mapping", "location", "function",
                                   "string_table", "time_nanos", "duration_nanos",
                                   "period_type", "period", "default_sample_type")] == \
        [1, 2, 3, 4, 5, 6, 9, 10, 11, 12, 14]
    m = profile_pb2.Mapping.DESCRIPTOR.fields_by_name
    assert [m[n].number for n in ("id", "memory_start", "memory_limit", "file_offset",
                                  "filename", "build_id", "has_functions", "has_filenames",
                                  "has_line_numbers", "has_inline_frames")] == list(range(1, 11))
    assert push_pb2.PushRequest.DESCRIPTOR.full_name == "push.v1.PushRequest"
    series = fields(push_pb2.RawProfileSeries)
    assert series["labels"][0] == 1 and series["samples"][0] == 2
    sample = fields(push_pb2.RawSample)
    assert sample["raw_profile"][0] == 1 and sample["ID"][0] == 2
    assert fields(types_pb2.LabelPair).keys() == {"name", "value"}
    assert types_pb2.LabelPair.DESCRIPTOR.full_name == "types.v1.LabelPair"
    svc = push_pb2.DESCRIPTOR.services_by_name["PusherService"]
    assert svc.full_name == "push.v1.PusherService" and "Push" in svc.methods_by_name
