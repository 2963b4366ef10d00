"""Provides the loss and accuracy charts (textual-plotext), redrawn from a RunHistory on demand."""

from __future__ import annotations

import time

from textual_plotext import PlotextPlot

from tuitrain.tui.history import RunHistory, Series

TRAIN_MARKER = "braille"
VALID_MARKER = "•"


def _plot_series(plt, series: Series, label: str, marker: str, y: list[float] | None = None, color=None) -> None:
    if len(series):
        plt.plot(series.x, y if y is not None else series.y, label=label, marker=marker, color=color)


class TimedPlot(PlotextPlot):
    """A plot that remembers how long its last render took (the dashboard paces redraws by it)."""

    render_seconds = 0.0

    def render(self):
        start = time.perf_counter()
        result = super().render()
        self.render_seconds = time.perf_counter() - start
        return result


class LossChart(TimedPlot):
    """Training loss per progress event (smoothed) and validation loss per epoch, x = step."""

    def draw(self, history: RunHistory, smoothing: float, log_y: bool) -> None:
        plt = self.plt
        plt.clear_figure()
        title = "loss" + (f"  smoothing {smoothing:g}" if smoothing else "") + ("  log" if log_y else "")
        plt.title(title)
        plt.xlabel("step")
        if log_y:
            plt.yscale("log")
        _plot_series(plt, history.train_loss, "train", TRAIN_MARKER, history.train_loss.smoothed(smoothing),
                     color="cyan")
        _plot_series(plt, history.valid_loss, "valid", VALID_MARKER, color="orange")
        self.refresh()


class EpochChart(TimedPlot):
    """Accuracy per epoch for classifiers, training and validation loss per epoch for regression."""

    def draw(self, history: RunHistory, log_y: bool) -> None:
        plt = self.plt
        plt.clear_figure()
        plt.title(("loss per epoch" if history.regression else "accuracy") + ("  log" if log_y else ""))
        plt.xlabel("epoch")
        if log_y and history.regression:
            plt.yscale("log")
        _plot_series(plt, history.epoch_train, "train", TRAIN_MARKER, color="cyan")
        _plot_series(plt, history.epoch_valid, "valid", VALID_MARKER, color="orange")
        self.refresh()
