"""An object for the unwind-table cache tests and where the cache keeps its table (no tests
here)."""

from __future__ import annotations

from pathlib import Path

from tests.helpers.unwind_synth import Cie, Fde, advance, def_cfa_offset, eh_frame, elf

EH_ADDR = 0x20000
BID = bytes(range(1, 21))
BID_HEX = BID.hex()


def object_bytes(*, build_id: bytes | None = BID, machine: int = 62, cfa: int = 16,
                 sections: tuple[str, ...] = (".eh_frame",)) -> bytes:
    cfi = eh_frame([Cie(), Fde(0x1000, 0x20, advance(1) + def_cfa_offset(cfa))], EH_ADDR).data
    return elf({name: (EH_ADDR, cfi) for name in sections} | {".text": (0x1000, b"\xc3" * 32)},
               build_id=build_id, machine=machine)


def object_file(directory: Path) -> Path:
    p = directory / "libobj.so"
    p.write_bytes(object_bytes())
    return p


def cache_file(root: Path, build_id: str = BID_HEX) -> Path:
    return root / "unwind" / build_id[:2] / f"{build_id[2:]}.tbl"
