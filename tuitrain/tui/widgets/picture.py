"""Turns a plotext figure into textual Strips cell by cell, without its ANSI text and rich's parse of it.

textual-plotext renders `Text.from_ansi(plot.build())`: plotext writes every cell's colours as
escape codes, rich parses them back, and textual converts the Text again. For a live chart that
is about half of a redraw's cost, paid while the training process waits for the core. Here the
figure's cell matrix (characters, foreground, style, background) becomes Segments directly;
each colour triple is decoded once, through plotext's own ANSI codes (its public `colorize`), so
the picture is the same one, cell for cell (tests/test_charts.py compares the two).

plotext has no public way to build a figure's matrix without its ANSI canvas: `_set_sizes`,
`_build_matrix` and the matrix's fields are its internals (pinned in constraints.txt, checked by
tests/test_private_api.py).
"""

from __future__ import annotations

from typing import Any

from plotext import colorize
from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.strip import Strip

_decoded: dict[tuple[Any, Any, Any], Style] = {}


def cell_style(colours: tuple[Any, Any, Any]) -> Style:
    """The rich Style of plotext's (foreground, style, background), as its ANSI codes say."""
    style = _decoded.get(colours)
    if style is None:
        foreground, style_name, background = colours
        text = Text.from_ansi(colorize("x", foreground, style_name, background))
        found = text.spans[0].style if text.spans else Style()
        style = _decoded[colours] = found if isinstance(found, Style) else Style.parse(found)
    return style


def figure_strips(plot: Any, base: Style) -> list[Strip]:
    """Build `plot` (a plotext figure already drawn and sized) and return its rows, top first,
    each cell's style laid over `base` (the widget's own colours)."""
    plot._set_sizes()  # what plotext's build() does, short of writing the ANSI canvas
    plot._build_matrix()
    matrix = plot.monitor.matrix
    combined: dict[tuple[Any, Any, Any], Style] = {}
    strips = []
    for row in reversed(range(matrix.rows)):
        marker, fore, style, back = (
            matrix.marker[row],
            matrix.fullground[row],
            matrix.style[row],
            matrix.background[row],
        )
        segments = []
        start = 0
        for col in range(1, matrix.cols + 1):
            if col == matrix.cols or fore[col] != fore[start] or style[col] != style[start] or back[col] != back[start]:
                colours = (fore[start], style[start], back[start])
                laid = combined.get(colours)
                if laid is None:
                    laid = combined[colours] = base + cell_style(colours)
                segments.append(Segment("".join(marker[start:col]), laid))
                start = col
        strips.append(Strip(segments, matrix.cols))
    return strips
