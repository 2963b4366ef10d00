"""Your own data from a CSV file: checked line by line, split, trained, shown like the built-in sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CliResult, run_cli

from tuitrain.config import resolve_config
from tuitrain.data.csv_files import load_table
from tuitrain.data.sets import load_dataset
from tuitrain.errors import UsageError

MOONS = Path(__file__).parents[1] / "examples" / "moons.csv"


def tuitrain(*args: str) -> CliResult:
    """`tuitrain ARGS` in this process: exit code, stdout and stderr as the command line gives them."""
    return run_cli(*args)


def write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


def test_the_sample_moons_reach_the_readme_accuracy(tmp_path: Path) -> None:
    done = tuitrain("run", "--data", str(MOONS), "--out", str(tmp_path), "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    start, end = events[0], events[-1]
    assert start["config"]["data"] == {**start["config"]["data"], "dataset": "csv", "path": str(MOONS)}
    assert (start["train_samples"], start["valid_samples"], start["test_samples"]) == (700, 150, 150)
    assert end["status"] == "completed" and end["test"]["accuracy"] >= 0.95  # README: 97.3% (146 of 150)


def test_string_labels_become_sorted_classes(tmp_path: Path) -> None:
    rows = "".join(f"{i % 7},{i % 5},{'cat' if i % 2 else 'dog'}\n" for i in range(30))
    table = load_table(write(tmp_path / "pets.csv", "x1,x2,label\n" + rows))
    assert table.task == "classes" and table.classes == ("cat", "dog") and table.outputs == 2
    assert table.y[:2] == (1.0, 0.0)  # row 0 is a dog


def test_a_regression_file_is_fitted(tmp_path: Path) -> None:
    rows = "".join(f"{i / 50:.3f},{2 * i / 50 + 1:.3f}\n" for i in range(200))
    path = write(tmp_path / "line.csv", "x,y\n" + rows)
    data = load_dataset(resolve_config("csv", data_path=path).data, seed=0)
    assert data.task == "regression" and data.num_outputs == 1 and data.input_shape == (1,)
    done = tuitrain("run", "--data", path, "--epochs", "60", "--out", str(tmp_path / "runs"), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1])["test"]["loss"] < 0.01  # standardized targets


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("x1,x2,label\n" + "1,2,0\n" * 20 + "3,abc,1\n", "bad.csv line 22: x2 is not a number ('abc')"),
        ("x1,x2,label\n" + "1,2,0\n" * 20 + "3,4\n", "bad.csv line 22: 2 values, expected 3 (x1,x2,label)"),
        ("a,b,c\n1,2,3\n", "bad.csv line 1: the header must be x1,x2,label (classes) or x,y (regression), not a,b,c"),
        ("x,y\n1,2\n", "bad.csv: 1 rows; at least 20 are needed to split train/valid/test"),
        ("x,y\n" + "1,2\n" * 20 + "nan,3\n", "bad.csv line 22: x must be a finite number, not 'nan'"),
        ("x1,x2,label\n" + "1,2,0\n" * 25, "bad.csv: 1 classes; between 2 and 100 are supported"),
        ("", "bad.csv is empty: it needs a header (x1,x2,label or x,y) and rows"),
    ],
)
def test_bad_files_are_refused_with_the_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path / "bad.csv", text)
    with pytest.raises(UsageError) as caught:
        load_table(path)
    assert str(caught.value) == f"{tmp_path}/{message}"
    done = tuitrain("run", "--data", path)  # before anything loads: one line, exit 2
    assert done.returncode == 2 and done.stderr == f"Error: {tmp_path}/{message}\n"


def test_a_missing_file_and_a_preset_without_one(tmp_path: Path) -> None:
    done = tuitrain("run", "--data", str(tmp_path / "nope.csv"))
    assert done.returncode == 2 and done.stderr == f"Error: no data file at {tmp_path}/nope.csv\n"
    done = tuitrain("run", "csv")
    assert done.returncode == 2 and "needs its file: --data FILE.csv" in done.stderr
