"""Architecture: the engine and the headless path never import a UI library."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

UI = ("textual", "rich", "click")
ROOT = Path(__file__).resolve().parents[1]


def core_modules() -> list[str]:
    """Every module of the core, as pyproject.toml's import-linter contract `core` defines it."""
    contracts = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]["contracts"]
    (core,) = [c for c in contracts if c.get("id") == "core"]
    modules = []
    for name in core["source_modules"]:
        path = ROOT / name.replace(".", "/")
        if path.is_dir():
            modules += [f"{name}.{f.stem}" for f in sorted(path.glob("*.py")) if f.stem != "__init__"]
        modules.append(name)
    return modules


# The headless printers and commands import rich lazily, only for the live bar.
LAZY_UI = ["tuitrain.headless.printers", "tuitrain.headless.commands", "tuitrain.headless.race"]


def test_the_core_is_every_package_but_the_front_ends():
    core = core_modules()
    assert "tuitrain.training.engine" in core and "tuitrain.store.writer" in core
    assert not [m for m in core if m.startswith(("tuitrain.tui", "tuitrain.cli", "tuitrain.headless"))]


@pytest.mark.slow  # a fresh interpreter: what it imports is the point
def test_core_and_headless_modules_import_no_ui():
    """One interpreter imports each module in turn; a UI module appearing is blamed on the import that brought it."""
    code = (
        "import importlib, sys, json\n"
        f"ui = {UI!r}\n"
        "leaks = {}\n"
        "for name in sys.argv[1:]:\n"
        "    importlib.import_module(name)\n"
        "    found = sorted(m for m in sys.modules if m.split('.')[0] in ui)\n"
        "    if found:\n"
        "        leaks[name] = found[:3]\n"
        "        break\n"
        "print(json.dumps(leaks))\n"
    )
    modules = core_modules() + LAZY_UI
    result = subprocess.run([sys.executable, "-c", code, *modules], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {}


@pytest.mark.slow  # a fresh interpreter: what it imports is the point
def test_headless_json_run_never_imports_textual():
    code = (
        "import sys, runpy\nsys.argv = ['tuitrain', 'run', 'neuron', '--epochs', '1', '--json']\n"
        "try:\n    runpy.run_module('tuitrain', run_name='__main__')\nexcept SystemExit:\n    pass\n"
        "print('UI' if any(m.split('.')[0] in ('textual', 'rich') for m in sys.modules) else 'CLEAN', file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.stderr.strip().endswith("CLEAN"), result.stderr
