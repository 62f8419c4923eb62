"""The venv's editable install is a path entry, not setuptools' import hook (scripts/setup.sh):
importing the hook cost ~20 ms at every ebpf-* start."""

from __future__ import annotations

import json
import subprocess
import sys


def _run(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd="/").stdout


def test_no_editable_import_hook_is_loaded_at_start():
    modules = json.loads(_run("import json, sys; print(json.dumps(sorted(sys.modules)))"))
    hooks = [m for m in modules if m.startswith("__editable__")]
    assert hooks == [], f"{hooks}: run `make setup` (scripts/setup.sh installs compat mode)"
    # and the checkout is still what is imported, from any directory
    assert _run("import symbolizer; print(symbolizer.__file__)").strip().endswith(
        "symbolizer/__init__.py")
