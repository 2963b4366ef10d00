"""Layout snapshots: SVG screenshots compared by pytest-textual-snapshot (snap_compare, syrupy underneath).

The snapshots are tests/__snapshots__/test_snapshots/*.svg; after a deliberate change of layout, run
`pytest tests/test_snapshots.py --snapshot-update`, look at the new files (an SVG opens in any browser; a
failing run writes snapshot_report.html with both pictures side by side) and commit them.

Each screen is taken at a fixed size, seed and device, and shows nothing that depends on the time, the
machine's speed or paths. snap_compare runs the app itself (App.run, its own event loop), so these tests
are plain functions: with asyncio_mode = "auto" pytest-asyncio leaves them alone.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from helpers import live_app, until

from tuitrain.config import resolve_config
from tuitrain.runs import start as session
from tuitrain.tui.app import make_app
from tuitrain.tui.screens.comparison import ComparisonScreen
from tuitrain.tui.screens.setup import SetupScreen

SIZE = (100, 30)
TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")


def test_setup_screen_neuron(snap_compare, monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)  # the device list depends on the machine
    app = make_app(preset="neuron")

    async def ready(pilot):
        await until(pilot, lambda: isinstance(app.screen, SetupScreen), what="setup")

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    """Three finished runs of the tiny preset at different learning rates (as tests/test_tui_compare.py's)."""
    out = tmp_path_factory.mktemp("runs")
    for lr in (0.5, 0.05, 0.005):
        trainer, writer = session.new_run(resolve_config(TINY, device="cpu", optimizer="sgd", lr=lr, epochs=3), out)
        trainer.run()
        writer.close()
    return sorted(str(p) for p in out.iterdir())


def test_comparison_of_three_runs_by_epoch(snap_compare, three_runs):
    app = make_app(compare_dirs=three_runs)

    async def by_epoch(pilot):
        await until(pilot, lambda: isinstance(app.screen, ComparisonScreen), what="comparison")
        screen = app.screen
        await until(
            pilot, lambda: all(r.record is not None and len(r.curves.epochs) == 3 for r in screen.runs), what="runs"
        )
        await pilot.press("x")  # by epoch: every point comes from epoch events, the same on every machine
        await until(pilot, lambda: screen.query_one("#compare-valid").chart.xlabel == "epoch", what="by epoch")

    assert snap_compare(app, terminal_size=SIZE, run_before=by_epoch)


def test_dashboard_of_a_finished_neuron_run(snap_compare, monkeypatch, tmp_path):
    """The charts of a finished run (trained in-process), without the speed (it depends on the machine).

    A step event goes out every PROGRESS_INTERVAL seconds, so how many steps a chart has depends on the
    machine's speed: here every step sends one. The run directory is under a temporary folder (nothing on
    this tab shows its path)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    monkeypatch.setattr("tuitrain.training.engine.PROGRESS_INTERVAL", 0.0)
    app, _, _ = live_app("neuron", show_speed=False, epochs=2, seed=0, device="cpu")

    async def finished(pilot):
        await until(pilot, lambda: app.screen.history.ended, what="run end")

    assert snap_compare(app, terminal_size=SIZE, run_before=finished)
