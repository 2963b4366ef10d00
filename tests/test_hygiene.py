"""Architecture: the engine and the headless path never import a UI library."""

from __future__ import annotations

import subprocess
import sys

import pytest

UI = ("textual", "rich", "click")
CORE = [
    "tuitrain.engine",
    "tuitrain.export",
    "tuitrain.events",
    "tuitrain.data",
    "tuitrain.models",
    "tuitrain.inspection",
    "tuitrain.config",
    "tuitrain.control",
    "tuitrain.remote",
    "tuitrain.runs",
    "tuitrain.writer",
    "tuitrain.session",
    "tuitrain.signals",
    "tuitrain.checkpoints",
    "tuitrain.vitals",
    "tuitrain.threads",
    "tuitrain.distributed",
    "tuitrain.exporters",
    "tuitrain.tblog",
    "tuitrain.userdata",
    "tuitrain.training",
    "tuitrain.fmt",
    "tuitrain.resources",
    "tuitrain.checks",
    "tuitrain.files",
    "tuitrain.ownership",
    "tuitrain.headless",
    "tuitrain.commands",
]


@pytest.mark.parametrize("module", CORE)
def test_headless_modules_import_no_ui(module):
    code = f"import sys, {module}; print(sorted(m for m in sys.modules if m.split('.')[0] in {UI!r}))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


def test_headless_json_run_never_imports_textual():
    code = (
        "import sys, runpy\nsys.argv = ['tuitrain', 'run', 'neuron', '--epochs', '1', '--json']\n"
        "try:\n    runpy.run_module('tuitrain', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('UI' if any(m.split('.')[0] in ('textual', 'rich') for m in sys.modules) else 'CLEAN', file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stderr.strip().endswith("CLEAN"), result.stderr
