"""Provides the Units panel: what each hidden unit learned (maps over the plane, contribution curves,
an image's feature maps), live at the inspection cadence; the pictures are drawn by units_draw."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widgets import Static

from tuitrain.tui.widgets.charts import TimedPlot
from tuitrain.tui.widgets.render import Depth, colour_depth, fit_phrases
from tuitrain.tui.widgets.text_lines import TextLines
from tuitrain.tui.widgets.units_draw import (
    CELL_HEIGHT,
    CELL_WIDTH,
    GridPlace,
    curves_chart,
    curves_notes,
    features_text,
    legend,
    map_grid,
    unit_detail,
)

if TYPE_CHECKING:  # torch stays out of the app's start (the data arrives with the first inspection)
    from tuitrain.training.units import Units


class UnitsPanel(VerticalScroll, can_focus=True):
    """Shows the latest Units; arrows move over the unit maps, enter enlarges one, , . pick the image sample."""

    BINDINGS = [
        Binding("up", "cursor(0, -1)", key_display="↑ ↓ ← →", show=False, tooltip="move over the unit maps"),
        Binding("down", "cursor(0, 1)", show=False),
        Binding("left", "cursor(-1, 0)", show=False),
        Binding("right", "cursor(1, 0)", show=False),
        Binding(
            "enter",
            "enlarge",
            key_display="enter",
            show=False,
            tooltip="enlarge the unit: its map and incoming weights",
        ),
        Binding("escape", "close", show=False, tooltip="back from the enlarged unit"),
        Binding("full_stop", "sample(1)", key_display=".", show=False, tooltip="images: the next test sample"),
        Binding("comma", "sample(-1)", key_display=",", show=False, tooltip="images: the previous test sample"),
    ]

    class SampleChanged(Message):
        """The test sample to step through the network changed (the dashboard asks for it)."""

        def __init__(self, sample: int) -> None:
            super().__init__()
            self.sample = sample

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.units: Units | None = None
        self.when = ""  # "live", "paused" or "as of epoch N"
        self.sample = 0  # images: the test split index asked for
        self.sample_count: int | None = None  # the test split's size, when known (, . wrap around)
        self.class_names: list[str] = []
        self.cursor = (0, 0)  # (layer, unit) of the maps
        self.enlarged = False
        self.places: list[GridPlace] = []

    def compose(self) -> ComposeResult:
        yield Static("Waiting for the units (computed while this panel shows)…", id="units-info")
        yield Static(id="units-detail")
        yield TextLines(id="units-body")
        yield TimedPlot(id="units-curve")
        yield Static(id="units-notes")

    def show(self, units: Units, when: str) -> None:
        self.units, self.when = units, when
        self.redraw()

    def set_sample(self, sample: int) -> None:
        """Choose the image to step through (from the predictions grid, a confusion cell, or , .)."""
        if self.sample_count:
            sample %= self.sample_count
        sample = max(0, sample)
        if sample != self.sample:
            self.sample = sample
            self.redraw()
            self.post_message(self.SampleChanged(sample))

    def action_sample(self, delta: int) -> None:
        self.set_sample(self.sample + delta)

    def on_resize(self) -> None:
        self.redraw()

    def layer_sizes(self) -> list[int]:
        maps = self.units.maps if self.units is not None else None
        return [int(layer.activations.shape[0]) for layer in maps.layers] if maps is not None else []

    def action_cursor(self, columns: int, rows: int) -> None:
        sizes = self.layer_sizes()
        if not sizes:
            self.scroll_relative(columns, rows, animate=False)
            return
        layer, unit = self.cursor
        per_row = self.places[layer].columns if layer < len(self.places) else 1
        unit += columns + rows * per_row
        if unit < 0 and layer > 0:  # off the top of a layer: the one above, same column
            layer -= 1
            unit = max(0, sizes[layer] - 1 - (sizes[layer] - 1) % per_row + (self.cursor[1] % per_row))
            unit = min(unit, sizes[layer] - 1)
        elif unit >= sizes[layer] and layer + 1 < len(sizes):
            layer, unit = layer + 1, min(self.cursor[1] % per_row if rows else 0, sizes[layer + 1] - 1)
        self.cursor = (layer, max(0, min(unit, sizes[layer] - 1)))
        self.redraw()
        self.call_after_refresh(self.cursor_into_view)

    def cursor_into_view(self) -> None:
        layer, unit = self.cursor
        if layer >= len(self.places):
            return
        place = self.places[layer]
        body = self.query_one("#units-body", TextLines)
        y = (
            body.region.y
            - self.content_region.y
            + self.scroll_y
            + place.first_line
            + unit // place.columns * CELL_HEIGHT
        )
        if self.enlarged:
            self.scroll_to(y=0, animate=False, immediate=True)  # the enlarged map is at the top
        elif y < self.scroll_y or y + CELL_HEIGHT > self.scroll_y + self.scrollable_content_region.height:
            self.scroll_to(y=max(0, y - 2), animate=False, immediate=True)

    def action_enlarge(self) -> None:
        self.enlarged = bool(self.layer_sizes()) and not self.enlarged
        self.redraw()
        self.call_after_refresh(self.cursor_into_view)

    def action_close(self) -> None:
        if self.enlarged:
            self.enlarged = False
            self.redraw()

    def unit_at(self, line: int, column: int) -> tuple[int, int] | None:
        """The unit whose map (or label) covers this line and column of the grid."""
        for place in self.places:
            offset = line - place.first_line
            rows = -(-place.units // place.columns)
            if 0 <= offset < rows * CELL_HEIGHT and column % CELL_WIDTH < CELL_WIDTH - 2:
                unit = offset // CELL_HEIGHT * place.columns + column // CELL_WIDTH
                if column // CELL_WIDTH < place.columns and unit < place.units:
                    return place.layer, unit
        return None

    def on_click(self, event: events.Click) -> None:
        body = self.query_one("#units-body", TextLines)
        offset = event.get_content_offset(body)
        if offset is None:
            return
        chosen = self.unit_at(offset.y, offset.x)
        if chosen is not None:
            self.focus()
            self.enlarged = True if chosen == self.cursor else self.enlarged
            self.cursor = chosen
            self.redraw()

    def header(self, units: Units, width: int, depth: Depth) -> Text:
        phrases: list[Any] = [("units", "bold"), (self.when, "reverse" if self.when == "paused" else "")]
        if units.kind == "maps" and units.maps is not None:
            phrases += [("activation over the input plane", "dim"), *legend(depth)]
            phrases.append(("arrows, enter or a click: enlarge a unit", "dim"))
        elif units.kind == "curves":
            phrases.append(("each hidden unit's contribution to the output", "dim"))
        elif units.kind == "features" and units.features is not None:
            f = units.features
            names = f.class_names or self.class_names
            true = names[f.label] if 0 <= f.label < len(names) else str(f.label)
            phrases += [(f"test sample {f.sample}", "bold"), (f"true class {true}", ""), (", . another sample", "dim")]
        return fit_phrases(phrases, width)

    def redraw(self) -> None:
        units = self.units
        if units is None or not self.is_mounted:
            return
        depth = colour_depth(self.app)
        width = max(20, self.size.width - 2)
        info = self.query_one("#units-info", Static)
        detail, body = self.query_one("#units-detail", Static), self.query_one("#units-body", TextLines)
        curve, notes = self.query_one("#units-curve", TimedPlot), self.query_one("#units-notes", Static)
        curve.display = units.kind == "curves"
        notes.display = units.kind == "curves"
        body.display = units.kind != "curves"
        detail.display = False
        info.update(self.header(units, width, depth))
        if units.kind == "maps" and units.maps is not None:
            sizes = self.layer_sizes()
            if not sizes:
                body.update(Text("No hidden layers."))
                return
            layer = min(self.cursor[0], len(sizes) - 1)
            self.cursor = (layer, min(self.cursor[1], sizes[layer] - 1))
            grid, self.places = map_grid(units.maps.layers, width, depth, self.cursor)
            body.update(grid.strips())
            if self.enlarged:
                detail.display = True
                detail.update(unit_detail(units.maps.layers, units.maps.bounds, self.cursor, width, depth))
        elif units.kind == "curves" and units.curves is not None:
            curve.show(curves_chart(units.curves))
            notes.update(curves_notes(units.curves, width))
        elif units.kind == "features" and units.features is not None:
            names = units.features.class_names or self.class_names
            body.update(features_text(units.features, names, width, depth))
        else:
            body.update(Text(units.reason or "Nothing to show for this network.", "yellow"))
