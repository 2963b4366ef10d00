"""Pilot test of the comparison view's seed groups: each group its mean curve inside a min-max band."""

from __future__ import annotations

from pathlib import Path

from helpers import screen_text, until
from textual.widgets import Static

from tuitrain.config import resolve_config
from tuitrain.runs import start as session
from tuitrain.tui.app import make_app
from tuitrain.tui.screens.comparison import ComparisonScreen
from tuitrain.tui.widgets.overlay import BAND_MARKER

TINY = str(Path(__file__).parent / "data" / "tiny_rings.toml")


async def test_two_groups_of_three_seeds_draw_one_band_each(tmp_path):
    run_dirs = []
    for optimizer in ("sgd", "adam"):
        for seed in (0, 1, 2):
            config = resolve_config(TINY, device="cpu", optimizer=optimizer, seed=seed, epochs=3)
            trainer, writer = session.new_run(config, tmp_path)
            trainer.run()
            writer.close()
            run_dirs.append(str(writer.run_dir))
    app = make_app(compare_dirs=run_dirs)
    async with app.run_test(size=(100, 30)) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ComparisonScreen), what="the comparison")
        screen = app.screen
        await until(
            pilot,
            lambda: len(screen.groups) == 2 and all(len(g.runs) == 3 for g in screen.groups),
            what="two groups of three",
        )
        await until(pilot, lambda: len(screen.query_one("#compare-valid").chart.lines) == 6, what="the bands")
        for chart in (screen.query_one("#compare-loss").chart, screen.query_one("#compare-valid").chart):
            bands = [line for line in chart.lines if line.marker == BAND_MARKER]
            means = [line for line in chart.lines if line.marker != BAND_MARKER]
            assert len(bands) == 4 and len(means) == 2  # min and max per group, under the two means
            assert chart.lines[:4] == tuple(bands)
            assert {line.colour for line in bands} == {line.colour for line in means}  # one colour per group
            assert len({line.colour for line in means}) == 2
            for mean in means:
                low, high = [b for b in bands if b.colour == mean.colour]
                assert all(lo <= m <= hi for lo, m, hi in zip(low.y, mean.y, high.y, strict=True))

        def legend_lines() -> list[str]:
            return [line for line in screen_text(app).splitlines() if "3 seeds: mean" in line]

        # the legend's height follows its text a refresh later (under load, one line showed first)
        await until(pilot, lambda: len(legend_lines()) == 2, what="both groups in the legend")
        text = screen_text(app)
        legend = legend_lines()
        assert any(line.split()[1] == "sgd" for line in legend) and any(line.split()[1] == "adam" for line in legend)
        assert all(f"band {BAND_MARKER} min-max" in line for line in legend)
        assert BAND_MARKER in text  # drawn on the charts too
        diff = str(screen.query_one("#compare-diff", Static).render())
        assert "train.optimizer" in diff and "train.seed" not in diff  # the bands span the seeds
