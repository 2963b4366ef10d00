"""Shell completion through click's protocol: commands, options, preset names, run directories."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def complete(words: str, cwd: Path, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """What bash would be offered for the last word of `words` (click's bash_complete protocol)."""
    parts = words.split(" ")
    done = subprocess.run(
        [sys.executable, "-m", "tuitrain"],
        env={
            **os.environ,
            **(env or {}),
            "_TUITRAIN_COMPLETE": "bash_complete",
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(parts) - 1),
        },
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    return [tuple(line.split(",", 1)) for line in done.stdout.splitlines()]  # type: ignore[misc]


def test_commands_and_options(tmp_path: Path) -> None:
    assert ("plain", "export") in complete("tuitrain ex", tmp_path)
    assert ("plain", "--threads") in complete("tuitrain run rings --thr", tmp_path)


def test_preset_names_builtin_and_user(tmp_path: Path) -> None:
    presets = tmp_path / "config" / "tuitrain" / "presets"
    presets.mkdir(parents=True)
    (presets / "ringlet.toml").write_text('name = "ringlet"\n')
    offered = complete("tuitrain run ri", tmp_path, {"XDG_CONFIG_HOME": str(tmp_path / "config")})
    assert ("plain", "rings") in offered and ("plain", "ringlet") in offered
    assert ("plain", "mlp") not in offered


def test_run_directories(tmp_path: Path) -> None:
    for name in ("20260101-000000-rings", "20260102-000000-mlp"):
        (tmp_path / "runs" / name).mkdir(parents=True)
        (tmp_path / "runs" / name / "summary.json").write_text("{}")
    (tmp_path / "runs" / "not-a-run").mkdir()
    offered = complete("tuitrain watch ", tmp_path)
    assert ("plain", "runs/20260101-000000-rings") in offered and ("plain", "runs/20260102-000000-mlp") in offered
    assert not any("not-a-run" in value for _, value in offered)
    assert ("plain", "runs/20260102-000000-mlp") in complete("tuitrain run --resume runs/2026010", tmp_path)
    assert [v for t, v in complete("tuitrain export runs/20260102", tmp_path) if t == "plain"] == [
        "runs/20260102-000000-mlp"
    ]
