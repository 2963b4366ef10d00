"""Presets ship in the wheel and are found by a non-editable install."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent


@pytest.mark.slow  # pip builds and installs a wheel; a fresh interpreter imports it
def test_wheel_carries_presets_and_installed_copy_finds_them(tmp_path):
    build = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(tmp_path / "dist"), str(ROOT)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stderr
    wheel = next((tmp_path / "dist").glob("tuitrain-*.whl"))
    names = zipfile.ZipFile(wheel).namelist()
    expected = {f"tuitrain/presets/{p.name}" for p in (ROOT / "presets").glob("*.toml")}
    assert expected and expected <= set(names)
    target = tmp_path / "site"
    install = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stderr
    code = (
        "import tuitrain.config as c; print(c.__file__); "
        "print(sorted(c.preset_paths())); print(c.load_preset('rings').train.epochs)"
    )
    # run from an empty folder with only the installed copy on the path, never the checkout
    result = subprocess.run(
        [sys.executable, "-I", "-c", f"import sys; sys.path.insert(0, {str(target)!r}); {code}"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    where, names_line, epochs = result.stdout.splitlines()
    assert where.startswith(str(target))
    assert "'rings'" in names_line and "'mlp'" in names_line and epochs == "1000"
