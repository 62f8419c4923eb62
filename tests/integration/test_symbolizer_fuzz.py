"""Mutated ELF files and recordings: a clean error or a result, never a traceback or a hang
(pytest-timeout bounds each test)."""

from __future__ import annotations

import random

import pytest

from cli_common.command import run
from symbolizer.cli import symbolize_main
from symbolizer.elfsyms import ElfReadError, read_elf_symbols_bytes
from tests.helpers.synthetic import synthetic_recording


def mutate(data: bytes, rng: random.Random) -> bytes:
    b = bytearray(data)
    choice = rng.random()
    if choice < 0.2:
        return bytes(b[: rng.randrange(len(b))])  # truncated
    # Header and section-header areas are where offsets live: hit them more often.
    hot = [0, len(b) - 0x800 if len(b) > 0x800 else 0]
    for _ in range(rng.randint(1, 16)):
        base = rng.choice(hot) if rng.random() < 0.6 else 0
        i = min(len(b) - 1, base + rng.randrange(min(len(b), 0x800)))
        b[i] = rng.randrange(256)
    return bytes(b)


@pytest.mark.timeout(120)
def test_elf_reader_survives_mutations(fixture_bins):
    rng = random.Random(1234)
    originals = [(fixture_bins / n).read_bytes() for n in ("workload-pie", "libfixture.so")]
    ok = errors = 0
    for _ in range(300):
        data = mutate(rng.choice(originals), rng)
        try:
            syms = read_elf_symbols_bytes(data)
        except ElfReadError:
            errors += 1
            continue
        ok += 1
        for t in (syms.symtab, syms.dynsym):
            t.lookup(0x1000)
    assert ok and errors  # the mutations exercised both paths


@pytest.mark.timeout(120)
def test_recording_reader_survives_mutations(fixture_bins, tmp_path, capsys):
    rec = synthetic_recording(tmp_path / "r.parquet", fixture_bins / "workload-pie",
                              fixture_bins / "libfixture.so")
    original = rec.read_bytes()
    rng = random.Random(99)
    codes = set()
    for i in range(40):
        bad = tmp_path / f"m{i}.parquet"
        bad.write_bytes(mutate(original, rng))
        rc = run("ebpf-symbolize", symbolize_main,
                 [str(bad), "--out", str(tmp_path / "o.txt"), "--cache-dir", str(tmp_path)])
        err = capsys.readouterr().err
        assert "Traceback" not in err
        codes.add(rc)
        if rc:
            assert err.startswith("ebpf-symbolize: error:")
    assert codes <= {0, 1, 3}
