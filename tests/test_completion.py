"""Shell completion through click's protocol: commands, options, preset names, run directories.

The protocol is answered by the entry point in this process (`run_cli` with click's variables set);
the tests that tab through bash itself start bash, which runs `python -m tuitrain`, and are slow."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import CliResult, run_cli


def protocol(env: dict[str, str], cwd: Path | None = None) -> CliResult:
    """`tuitrain` in this process with click's completion variables `env` set (and `cwd` current)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in env.items():
            patch.setenv(name, value)
        if cwd is not None:
            patch.chdir(cwd)
        return run_cli()


def complete(words: str, cwd: Path, env: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """What bash would be offered for the last word of `words` (click's bash_complete protocol)."""
    parts = words.split(" ")
    done = protocol(
        {**(env or {}), "_TUITRAIN_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(len(parts) - 1)},
        cwd,
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


def bash_complete(words: str, cwd: Path, env: dict[str, str] | None = None) -> tuple[list[str], list[str]]:
    """Tab through bash itself: source click's script, call its completion function, read COMPREPLY
    (and which `compopt` fallbacks it asked for: `-o default` files, `-o dirnames` folders)."""
    source = protocol({"_TUITRAIN_COMPLETE": "bash_source"})
    assert source.returncode == 0, source.stderr
    # the function runs the command it completes
    script = source.stdout.replace("$1)", f"{sys.executable} -m tuitrain)")
    empty_last = " ''" if words.endswith(" ") else ""  # the word being typed, still empty
    program = (
        'compopt() { echo "compopt $1 $2" >&2; }\n'  # outside readline: record the fallback bash would use
        f"{script}\n"
        f"COMP_WORDS=({words}{empty_last})\n"
        "COMP_CWORD=$(( ${#COMP_WORDS[@]} - 1 ))\n"
        "_tuitrain_completion tuitrain\n"
        'printf "%s\\n" "${COMPREPLY[@]}"\n'
    )
    done = subprocess.run(
        ["bash", "--norc", "--noprofile", "-c", program],
        env={**os.environ, **(env or {})},
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    fallbacks = [line for line in done.stderr.splitlines() if line.startswith("compopt")]
    return [line for line in done.stdout.splitlines() if line], fallbacks


@pytest.mark.slow  # bash, which runs `python -m tuitrain` for each completion
@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_offers_presets_and_files_only_where_none_match(tmp_path: Path) -> None:
    (tmp_path / "mine.toml").write_text('name = "mine"\n')
    offered, fallbacks = bash_complete("tuitrain train ri", tmp_path)
    assert "rings" in offered and fallbacks == []
    offered, fallbacks = bash_complete("tuitrain run ", tmp_path)
    assert {"rings", "mlp"} <= set(offered) and fallbacks == []
    offered, fallbacks = bash_complete("tuitrain run mi", tmp_path)  # no preset: the shell's files
    assert offered == [] and fallbacks == ["compopt -o default"]


@pytest.mark.slow  # bash, which runs `python -m tuitrain` for each completion
@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_offers_run_directories(tmp_path: Path) -> None:
    (tmp_path / "runs" / "20260101-000000-rings").mkdir(parents=True)
    (tmp_path / "runs" / "20260101-000000-rings" / "summary.json").write_text("{}")
    offered, fallbacks = bash_complete("tuitrain watch ", tmp_path)
    assert offered == ["runs/20260101-000000-rings"] and fallbacks == []
    offered, fallbacks = bash_complete("tuitrain watch elsewhere/", tmp_path)
    assert offered == [] and fallbacks == ["compopt -o dirnames"]


@pytest.mark.parametrize("shell", ["zsh", "fish"])
def test_other_shells_get_presets_and_no_files_over_them(shell: str, tmp_path: Path) -> None:
    """Where zsh or fish is installed: its script loads, and its protocol lists presets without files."""
    if shutil.which(shell) is None:
        pytest.skip(f"{shell} is not installed")
    source = protocol({"_TUITRAIN_COMPLETE": f"{shell}_source"})
    assert source.returncode == 0, source.stderr
    (tmp_path / "script").write_text(source.stdout)
    check = subprocess.run([shell, "-n", str(tmp_path / "script")], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stderr
    words = "tuitrain train ri"
    done = protocol({"_TUITRAIN_COMPLETE": f"{shell}_complete", "COMP_WORDS": words, "COMP_CWORD": "2"}, tmp_path)
    lines = done.stdout.splitlines()
    assert "rings" in lines and "file" not in lines and not any(line.startswith("file,") for line in lines)
