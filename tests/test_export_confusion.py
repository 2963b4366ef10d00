"""`tuitrain export RUN_DIR --format csv --confusion`: a checkpoint's test confusion matrix, class names as headers."""

from __future__ import annotations

import csv
import io
from pathlib import Path

import pytest
from conftest import run_cli, train_tiny

from tuitrain.config import apply_overrides, load_preset
from tuitrain.runs import start as session
from tuitrain.store.run_dir import read_summary_file


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_tiny(tmp_path_factory.mktemp("confusion"))


def trained(folder: Path, preset: str, samples: int, **overrides: object) -> Path:
    config = apply_overrides(load_preset(preset), **overrides)
    config.data.samples = samples
    trainer, writer = session.new_run(config, folder)
    trainer.run()
    writer.close()
    return Path(writer.run_dir)


def table(text: str) -> tuple[list[str], list[list[str]]]:
    header, *rows = list(csv.reader(io.StringIO(text)))
    return header, rows


def test_confusion_csv_has_class_names_and_adds_up(run: Path) -> None:
    done = run_cli("export", run, "--format", "csv", "--confusion", "-o", "-")
    assert done.code == 0, done.err
    header, rows = table(done.out)
    assert header == ["true_class", "inner", "middle", "outer", "per_class_accuracy"]
    assert [r[0] for r in rows] == ["inner", "middle", "outer"]
    counts = [[int(c) for c in r[1:-1]] for r in rows]
    assert sum(map(sum, counts)) == 300  # the test split: 15% of 2000
    for i, (row, r) in enumerate(zip(counts, rows, strict=True)):
        assert float(r[-1]) == pytest.approx(row[i] / sum(row), rel=1e-5)
    summary, _, _ = read_summary_file(run / "summary.json")  # by default the final network, as the run tested it
    right = sum(counts[i][i] for i in range(3))
    assert right / 300 == pytest.approx(summary["test"]["accuracy"])


def test_confusion_of_a_checkpoint_goes_into_the_run_by_default(run: Path) -> None:
    done = run_cli("export", run, "--format", "csv", "--confusion", "--checkpoint", "best")
    assert done.code == 0, done.err
    written = run / "confusion-best.csv"
    assert done.out.strip() == str(written)
    header, rows = table(written.read_text())
    assert len(header) == 5 and len(rows) == 3


def test_a_binary_run_gives_two_by_two(tmp_path: Path) -> None:
    neuron = trained(tmp_path, "neuron", epochs=1, samples=400)
    done = run_cli("export", neuron, "--format", "csv", "--confusion", "-o", "-")
    assert done.code == 0, done.err
    header, rows = table(done.out)
    assert len(header) == 4 and len(rows) == 2
    assert sum(int(c) for r in rows for c in r[1:3]) == 60  # 15% of 400


def test_refusals_are_one_line(run: Path, tmp_path: Path) -> None:
    square = trained(tmp_path, "square", epochs=1, samples=200, batch_size=50)
    for args, words in (
        ((square,), "regression"),
        ((run, run), "one run"),
        ((run, "--steps"), "without --steps"),
    ):
        done = run_cli("export", *args, "--format", "csv", "--confusion")
        assert done.code == 2, done.err
        assert done.err.count("\n") == 1 and done.err.startswith("Error: ") and words in done.err, done.err
        assert "Traceback" not in done.err
    done = run_cli("export", run, "--format", "tensorboard", "--confusion", "-o", tmp_path / "tb")
    assert done.code == 2 and "--confusion is for --format csv" in done.err
    assert not list(square.glob("confusion-*.csv"))
