"""The private names of Textual, textual-plotext and plotext that tuitrain uses, each still there.

constraints.txt pins those three packages because of these names. Before moving a pin, run this file:
a name that is gone fails here, saying which symbol and which of our files uses it, instead of failing
as a broken chart or an app that no longer saves a crashed run. An override of a private method that
was renamed would not fail at all (ours would just never be called), so those are listed too.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any

import pytest


def built_figure() -> Any:
    """A figure as the charts hold one (textual-plotext's Plot), drawn and built by public calls only."""
    from textual_plotext import Plot

    plot = Plot()
    plot.plot([0, 1, 2], [2, 0, 1], marker="braille", color="red")
    plot.plotsize(20, 8)
    plot.build()
    return plot


# Roots that are not modules: objects whose instance attributes we use.
ROOTS: dict[str, Callable[[], Any]] = {
    "<a plotext figure>": built_figure,
    "<a textual App>": lambda: importlib.import_module("textual.app").App(),
    "<a textual FooterKey>": lambda: importlib.import_module("textual.widgets._footer").FooterKey(
        "q", "q", "Quit", "quit"
    ),
}

# (module or root, attribute path, where tuitrain uses it)
PRIVATE: list[tuple[str, str, str]] = [
    # Textual
    ("textual.app", "App._handle_exception", "tuitrain/tui/app.py (TuitrainApp overrides it and calls it)"),
    ("<a textual App>", "_exit_renderables", "tuitrain/tui/app.py (TuitrainApp._handle_exception clears it)"),
    ("textual.command", "CommandPalette._GATHER_COMMANDS_GROUP", "tuitrain/tui/screens/palette.py (its @work group)"),
    ("textual.command", "CommandPalette._gather_commands", "tuitrain/tui/screens/palette.py (Palette overrides it)"),
    ("textual.command", "CommandPalette._gather_commands.__wrapped__", "tuitrain/tui/screens/palette.py (calls it)"),
    (
        "textual.command",
        "CommandPalette._action_command_list",
        "tuitrain/tui/screens/palette.py (Palette overrides it)",
    ),
    ("textual.widgets._footer", "FooterKey", "tuitrain/tui/screens/dashboard.py (FittingFooter.compose)"),
    ("<a textual FooterKey>", "action", "tuitrain/tui/screens/dashboard.py (FittingFooter.compose)"),
    ("<a textual FooterKey>", "key_display", "tuitrain/tui/screens/dashboard.py (FittingFooter.compose)"),
    ("<a textual FooterKey>", "description", "tuitrain/tui/screens/dashboard.py (FittingFooter.compose)"),
    # textual-plotext
    ("textual_plotext", "PlotextPlot._get_plotext_theme_name", "tuitrain/tui/widgets/charts.py (TimedPlot._draw)"),
    # plotext: the figure's private methods and its (undocumented) cell matrix
    ("<a plotext figure>", "_set_size", "tuitrain/tui/widgets/charts.py (TimedPlot._draw)"),
    ("<a plotext figure>", "_set_sizes", "tuitrain/tui/widgets/picture.py (figure_strips)"),
    ("<a plotext figure>", "_build_matrix", "tuitrain/tui/widgets/picture.py (figure_strips)"),
    ("<a plotext figure>", "monitor.matrix.rows", "tuitrain/tui/widgets/picture.py (figure_strips)"),
    ("<a plotext figure>", "monitor.matrix.cols", "tuitrain/tui/widgets/picture.py (figure_strips)"),
    ("<a plotext figure>", "monitor.matrix.marker", "tuitrain/tui/widgets/picture.py (figure_strips)"),
    ("<a plotext figure>", "monitor.matrix.fullground", "tuitrain/tui/widgets/picture.py (figure_strips)"),
    ("<a plotext figure>", "monitor.matrix.style", "tuitrain/tui/widgets/picture.py (figure_strips)"),
    ("<a plotext figure>", "monitor.matrix.background", "tuitrain/tui/widgets/picture.py (figure_strips)"),
]


def check(root: str, path: str, where: str) -> None:
    """Resolve `root`.`path`, or fail naming the symbol and its user."""
    symbol = f"{root}.{path}"
    try:
        obj = ROOTS[root]() if root in ROOTS else importlib.import_module(root)
    except Exception as error:  # a root that cannot be built: its own name is the news
        pytest.fail(f"{root} cannot be had ({type(error).__name__}: {error}): {where} uses {symbol}")
    for name in path.split("."):
        if not hasattr(obj, name):
            pytest.fail(f"{symbol} is gone: {where} uses it")
        obj = getattr(obj, name)


@pytest.mark.parametrize(("root", "path", "where"), PRIVATE, ids=[f"{root}.{path}" for root, path, _ in PRIVATE])
def test_private_names_we_use_still_exist(root: str, path: str, where: str) -> None:
    check(root, path, where)


def test_a_missing_name_fails_loudly_naming_the_symbol_and_its_user(monkeypatch: pytest.MonkeyPatch) -> None:
    from textual_plotext import PlotextPlot

    monkeypatch.delattr(PlotextPlot, "_get_plotext_theme_name")
    with pytest.raises(pytest.fail.Exception) as failed:
        check("textual_plotext", "PlotextPlot._get_plotext_theme_name", "tuitrain/tui/widgets/charts.py")
    assert str(failed.value) == (
        "textual_plotext.PlotextPlot._get_plotext_theme_name is gone: tuitrain/tui/widgets/charts.py uses it"
    )


def test_textuals_footer_still_marks_its_palette_key() -> None:
    """FittingFooter (tuitrain/tui/screens/dashboard.py) finds the palette key by its CSS class."""
    import inspect

    import textual.widgets._footer as footer

    assert '"-command-palette"' in inspect.getsource(footer.Footer), (
        "textual.widgets._footer.Footer no longer gives its palette key the class -command-palette: "
        "tuitrain/tui/screens/dashboard.py (FittingFooter.compose) looks for it"
    )
