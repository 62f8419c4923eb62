"""Generate the Python modules of proto/*.proto (`make proto`).

Each proto/<package dir>/<name>.proto becomes <package dir>/<name>_pb2.py and .pyi at the
project root; with --out DIR they go under DIR instead (the unit test compares that with the
committed files). protoc is grpcio-tools' bundled one, the version pinned in pyproject.toml,
so the output is the same on every machine.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROTO_DIR = ROOT / "proto"


def proto_files() -> list[Path]:
    return sorted(PROTO_DIR.rglob("*.proto"))


def generate(out: Path) -> list[Path]:
    """Run protoc over every .proto; return the files written, relative to out."""
    from grpc_tools import protoc  # dev dependency: only `make proto` and its test need it

    out.mkdir(parents=True, exist_ok=True)
    rel = [str(p.relative_to(PROTO_DIR)) for p in proto_files()]
    rc = protoc.main(["grpc_tools.protoc", f"--proto_path={PROTO_DIR}",
                      f"--python_out={out}", f"--pyi_out={out}", *rel])
    if rc != 0:
        raise SystemExit(f"gen_proto: protoc failed ({rc})")
    written = []
    for r in rel:
        stem = Path(r).with_suffix("")
        written += [Path(f"{stem}_pb2.py"), Path(f"{stem}_pb2.pyi")]
    return written


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=ROOT, help="where the package dirs go")
    args = ap.parse_args(argv)
    for path in generate(args.out):
        print(f"gen_proto: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
