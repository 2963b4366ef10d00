"""Provides the setup screen: pick a preset, see its network and data, adjust settings, start."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import events, on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, OptionList, Select, Static
from textual.worker import Worker, WorkerState

from tuitrain import config as cfgmod
from tuitrain.errors import TuitrainError
from tuitrain.tui import state as ui_state
from tuitrain.tui.screens.branch import OpenRuns


@dataclass(frozen=True)
class Field:
    """One setting on the form: where it lives in the config and how it is typed."""

    key: str
    label: str
    section: str  # model | data | train
    kind: str  # choice | float | int | path
    hint: str = ""


FIELDS = (
    Field("optimizer", "Optimizer", "train", "choice"),
    Field("lr", "Learning rate", "train", "float", "per step, e.g. 0.01"),
    Field("momentum", "Momentum", "train", "float", "0 to 1"),
    Field("weight_decay", "Weight decay", "train", "float", "0 to 1"),
    Field("batch_size", "Batch size", "train", "int", "samples per step"),
    Field("epochs", "Epochs", "train", "int", "passes over the data"),
    Field("activation", "Activation", "model", "choice"),
    Field("seed", "Seed", "train", "int", "0 or more"),
    Field("device", "Device", "train", "choice"),
    Field("dataset", "Data set", "data", "choice"),
    Field("data_dir", "Data folder", "data", "path", "IDX files; empty: the usual places"),
)
# the csv data set's file: on the form only while the data set is csv (in place of the data folder)
DATA_FILE = Field("path", "Data file", "data", "path", "a CSV file: x1,x2,label or x,y")
FORM_FIELDS = (*FIELDS, DATA_FILE)
ROWS = (
    ("optimizer", "lr"),
    ("momentum", "weight_decay"),
    ("batch_size", "epochs"),
    ("activation", "seed"),
    ("device", "dataset"),
    ("data_dir", "path"),
)
NARROW = 96  # columns below which each field gets a line of its own
OTHER_IMAGE_SET = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}  # same shapes, same networks
GENERATED = ("blobs", "rings", "square", "wave")  # data sets made from the seed, never read from disk


def device_options() -> list[tuple[str, str]]:
    import torch

    cuda = torch.cuda.is_available()
    label = f"cuda ({torch.cuda.get_device_name(0)})" if cuda else "cuda (not available here)"
    return [("auto: " + ("cuda" if cuda else "cpu"), "auto"), ("cpu", "cpu"), (label, "cuda")]


def data_line(dataset: str, data_dir: str = "", path: str = "") -> tuple[Text, str | None]:
    """The Data line for a data set, and a ready alternative to offer when it is not on disk."""
    from tuitrain.data.idx import TORCHVISION_NAMES, cache_dir, data_status

    if dataset == "csv":
        from tuitrain.data.csv_files import load_table

        if not path:
            return Text.assemble(("● needs a file", "bold yellow"), "  name your CSV file in Data file"), None
        try:
            table = load_table(path)
        except TuitrainError:
            return Text.assemble(("● not usable", "bold red"), "  see Data file below"), None
        kind = f"{len(table.classes)} classes" if table.classes else "regression"
        return Text.assemble(
            ("● ready", "bold green"), f"  {path}: {len(table.x):,} rows, {table.inputs} inputs, {kind}"
        ), None
    if data_status(dataset, data_dir) == "ready":
        where = "generated from the seed" if dataset in GENERATED else "on disk"
        return Text.assemble(("● ready", "bold green"), f"  {dataset}: {where}"), None
    other = OTHER_IMAGE_SET.get(dataset)
    if other is not None and data_status(other, data_dir) == "ready":
        return Text.assemble(
            ("● not on disk", "bold yellow"),
            f"  {dataset} would be downloaded (needs internet); ",
            (f"{other} is ready here: press f to use it", "bold"),
        ), other
    folder = cache_dir() / TORCHVISION_NAMES.get(dataset, dataset) / "raw"
    return Text.assemble(
        ("● will download", "bold yellow"),
        f"  {dataset} is fetched on first use (needs internet). ",
        ("Offline: copy the four IDX files to ", "dim"),
        str(folder),
        (" or name their folder in Data folder.", "dim"),
    ), None


@functools.lru_cache(maxsize=64)
def network_layers(
    kind: str, hidden: tuple[int, ...], activation: str, shape: tuple[int, ...], outputs: int
) -> tuple[Any, ...]:
    """The summary rows of a network (built once per distinct setting, not on every keystroke)."""
    from tuitrain.config import ModelConfig
    from tuitrain.training.models import build_model, describe

    model = build_model(ModelConfig(kind=kind, hidden=list(hidden), activation=activation), shape, outputs)
    return tuple(describe(model))


def network_summary(config: cfgmod.Config) -> Table:
    m = config.model
    shape, outputs = cfgmod.data_shape(config.data)  # a CSV file's columns (read once per change of the file)
    layers = network_layers(m.kind, tuple(m.hidden), m.activation, tuple(shape), outputs)
    table = Table(box=None, padding=(0, 1), show_header=True, header_style="dim")
    table.add_column("layer", no_wrap=True)
    table.add_column("detail")
    table.add_column("params", justify="right")
    for layer in layers:
        table.add_row(
            layer.name, f"{layer.kind} {layer.detail}".rstrip(), f"{layer.parameters:,}" if layer.parameters else ""
        )
    table.add_row("", Text("total", "bold"), Text(f"{sum(layer.parameters for layer in layers):,}", "bold"))
    return table


class SetupScreen(Screen[None]):
    """The first screen of bare `tuitrain`: every field is checked as it is typed; Start checks the
    data in a worker, then opens the dashboard."""

    # The focused field shows at a glance, without colour too: its label reversed, its value on the accent;
    # an Input's value is selected when tabbed into (typing replaces it; → or End, then typing appends)
    DEFAULT_CSS = """
    SetupScreen .field.-focused > Label {
        text-style: bold reverse;
        color: $accent;
    }
    SetupScreen .field Input:focus, SetupScreen .field Select:focus > SelectCurrent {
        background: $accent 30%;
    }
    SetupScreen .field Input:focus > .input--selection {
        text-style: reverse;
    }
    """
    BINDINGS = [
        Binding("ctrl+s", "start", "Start", priority=True),
        Binding("escape", "app.quit", "Quit"),
        Binding("f", "use_other_data", "Use the data on disk"),
        Binding("ctrl+o", "runs", "Runs", priority=True, tooltip="the runs in --out: compare, branch, watch"),
    ]

    def __init__(self, preset: str | None = None):
        super().__init__()
        self.presets = dict(cfgmod.preset_paths())  # csv among them: its file goes in Data file
        remembered = ui_state.load()
        self.out_dir = remembered["out"]
        preset = preset if preset in self.presets else remembered["preset"]  # the last one picked
        self.preset = preset if preset in self.presets else next(iter(self.presets), None)
        self.base: cfgmod.Config | None = None
        self.errors: dict[str, str] = {}  # field key -> what is wrong with it
        self.alternative: str | None = None  # a ready data set to offer instead of a missing one

    def compose(self) -> ComposeResult:
        fields = {f.key: f for f in FORM_FIELDS}
        with Horizontal(id="setup"):
            with Vertical(id="preset-column"):
                yield Label("Presets", classes="heading")
                yield OptionList(*self.presets, id="presets")
            with VerticalScroll(id="setup-form", can_focus=False):
                yield Static(id="description")
                yield Static(id="data-status")
                for row in ROWS:
                    with Horizontal(classes="row"):
                        for key in row:
                            with Vertical(classes="cell", id=f"{key}-cell"):
                                with Horizontal(classes="field"):
                                    yield Label(fields[key].label)
                                    yield self.control(fields[key])
                                yield Static(id=f"{key}-error", classes="field-error")
                yield Static(id="setup-error")
                yield Button("Start training (ctrl+s)", variant="success", id="start", compact=True)
                yield Static(id="summary")
        yield Footer()

    @staticmethod
    def control(field: Field) -> Select[str] | Input:
        if field.key == "optimizer":
            return Select([(o, o) for o in cfgmod.OPTIMIZERS], id=field.key, allow_blank=False, compact=True)
        if field.key == "activation":
            return Select([(a, a) for a in cfgmod.ACTIVATIONS], id=field.key, allow_blank=False, compact=True)
        if field.key == "device":
            return Select(device_options(), id=field.key, allow_blank=False, compact=True)
        if field.key == "dataset":
            return Select([(d, d) for d in cfgmod.DATASETS], id=field.key, allow_blank=False, compact=True)
        return Input(id=field.key, placeholder=field.hint, compact=True)  # text: "abc" stays visible, then marked

    def on_mount(self) -> None:
        self.query_one("#setup-error").display = False
        options = self.query_one("#presets", OptionList)
        if self.preset is not None:
            options.highlighted = list(self.presets).index(self.preset)
            self.load_preset(self.preset)
        options.focus()

    def on_descendant_focus(self, event: events.DescendantFocus) -> None:
        """Mark the focused control's field (a class, not :focus-within: Textual restyles only the focused
        widget and its ancestors, not the label beside it)."""
        for field in self.query(".field.-focused"):
            field.remove_class("-focused")
        for node in event.widget.ancestors_with_self:
            if node.has_class("field"):
                node.add_class("-focused")
                break

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        for node in event.widget.ancestors_with_self:
            if node.has_class("field"):
                node.remove_class("-focused")
                break

    def on_resize(self) -> None:
        self.set_class(self.size.width < NARROW, "-narrow")

    @on(OptionList.OptionHighlighted, "#presets")
    def preset_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.load_preset(str(event.option.prompt))

    @on(OptionList.OptionSelected, "#presets")
    def preset_selected(self) -> None:
        self.query_one("#optimizer").focus()

    def load_preset(self, name: str) -> None:
        self.preset = name
        ui_state.remember(preset=name)
        try:
            self.base = cfgmod.load_preset(name)
        except TuitrainError as exc:
            self.base = None
            self.show_error(str(exc))
            return
        c = self.base.to_dict()
        with self.prevent(Input.Changed, Select.Changed):
            for field in FORM_FIELDS:
                value = c[field.section][field.key]
                widget = self.query_one(f"#{field.key}")
                widget.value = f"{value:g}" if field.kind == "float" else str(value)  # type: ignore[attr-defined]
        self.query_one("#activation", Select).disabled = self.base.model.kind == "neuron"
        self.query_one("#description", Static).update(Text.assemble((name, "bold"), "  ", self.base.description))
        self.refresh_details()

    @on(Input.Changed)
    @on(Select.Changed)
    def settings_changed(self) -> None:
        self.refresh_details()

    # ------------------------------------------------------------------ the form's config
    def field_values(self) -> dict[str, Any]:
        """Each field's value checked on its own; what is wrong goes to `self.errors` (shown beside it)."""
        values: dict[str, Any] = {}
        self.errors = {}
        for field in FORM_FIELDS:
            widget = self.query_one(f"#{field.key}")
            raw = widget.value  # type: ignore[attr-defined]
            try:
                if field.kind == "choice":
                    value: Any = raw
                elif field.kind == "path":
                    value = str(raw).strip()
                    if value and field.key == "path":
                        value = str(Path(value).expanduser())
                else:
                    text = str(raw).strip()
                    if not text:
                        raise TuitrainError(f"{field.label}: needs a value ({field.hint})")
                    try:
                        value = float(text) if field.kind == "float" else int(text)
                    except ValueError:
                        what = "a number" if field.kind == "float" else "a whole number"
                        raise TuitrainError(f"{field.label} must be {what}, not {text!r}") from None
                values[field.key] = cfgmod.check_setting(field.section, field.key, value, field.label)
                problem = self.field_problem(field.key, values[field.key])
                if problem:
                    raise TuitrainError(f"{field.label}: {problem}")
            except TuitrainError as exc:
                self.errors[field.key] = str(exc)
        return values

    def field_problem(self, key: str, value: Any) -> str:
        """What the config checks cannot know: this machine's GPU, folders and files on disk."""
        if key == "device" and value == "cuda":
            import torch

            if not torch.cuda.is_available():
                return "no CUDA GPU is visible here: choose auto or cpu"
        csv = self.query_one("#dataset", Select).value == "csv"
        if key == "data_dir" and value and not csv and not Path(value).expanduser().is_dir():
            return f"no such folder {value!r}"
        if key == "path" and csv:
            if not value:
                return "needs a value (the csv data set trains on your file)"
            from tuitrain.data.csv_files import load_table

            try:
                load_table(value)  # its problems with line numbers, as `run --data` says them
            except TuitrainError as exc:
                return str(exc)
        return ""

    def resolved(self) -> cfgmod.Config:
        """The config the form shows; a TuitrainError when a field is invalid or the whole does not fit."""
        if self.base is None:
            raise TuitrainError("pick a preset that loads")
        values = self.field_values()
        if self.errors:
            raise TuitrainError(next(iter(self.errors.values())))
        raw = self.base.to_dict()
        for field in FORM_FIELDS:
            if field.key == "activation" and self.base.model.kind == "neuron":
                continue
            raw[field.section][field.key] = values[field.key]
        if raw["data"]["dataset"] != "csv":
            raw["data"]["path"] = ""  # a file typed for csv, then another data set chosen
        return cfgmod.config_from_dict(raw, source="this setup", default_name=self.base.name)

    def refresh_details(self) -> None:
        if self.base is None:
            return
        dataset = str(self.query_one("#dataset", Select).value)
        data_dir = self.query_one("#data_dir", Input).value.strip()
        path = self.query_one("#path", Input).value.strip()
        csv = dataset == "csv"
        self.query_one("#path-cell").display = csv  # a file for csv, the IDX folder for the image sets
        self.query_one("#data_dir-cell").display = not csv
        line, self.alternative = data_line(dataset, data_dir, str(Path(path).expanduser()) if path else "")
        self.query_one("#data-status", Static).update(Text("Data  ", "bold").append_text(line))
        self.refresh_bindings()
        self.query_one("#momentum", Input).disabled = str(self.query_one("#optimizer", Select).value) not in (
            "momentum",
            "nesterov",
        )
        try:
            config = self.resolved()
        except TuitrainError as exc:
            self.show_field_errors()
            self.show_error("" if self.errors else str(exc))
            self.query_one("#start", Button).disabled = True
            return
        self.show_field_errors()
        self.show_error("")
        self.query_one("#start", Button).disabled = False
        try:
            summary = network_summary(config)
        except TuitrainError as exc:  # the CSV file changed since it was checked
            self.show_error(str(exc))
            self.query_one("#start", Button).disabled = True
            return
        self.query_one("#summary", Static).update(summary)

    def show_field_errors(self) -> None:
        for field in FORM_FIELDS:
            message = self.errors.get(field.key, "")
            self.query_one(f"#{field.key}").set_class(bool(message), "-invalid")
            error = self.query_one(f"#{field.key}-error", Static)
            error.update(Text(f"✗ {message}" if message else ""))  # reads as an error without colour too
            error.display = bool(message)

    def show_error(self, message: str) -> None:
        error = self.query_one("#setup-error", Static)
        error.update(Text(message))
        error.display = bool(message)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "use_other_data":
            return self.alternative is not None
        return True

    def action_runs(self) -> None:
        self.post_message(OpenRuns(self.out_dir))

    def action_use_other_data(self) -> None:
        if self.alternative is not None:
            self.query_one("#dataset", Select).value = self.alternative

    @on(Input.Submitted)
    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        try:
            config = self.resolved()
        except TuitrainError as exc:
            self.refresh_details()
            if self.errors:
                first = next(iter(self.errors))
                self.query_one(f"#{first}").focus()
                self.notify("Fix the marked field first: " + self.errors[first], severity="warning", timeout=4)
            else:
                self.show_error(str(exc))
            return
        button = self.query_one("#start", Button)
        button.disabled = True
        button.label = "Checking data…"
        self.build_trainer(config)

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup")
    def build_trainer(self, config: cfgmod.Config) -> cfgmod.Config:
        """Check what can fail before the dashboard opens (device, data on disk or downloadable)."""
        from tuitrain.data.sets import ensure_available
        from tuitrain.training.step import resolve_device

        resolve_device(config.train.device)
        if config.data.dataset == "csv":
            cfgmod.data_shape(config.data)  # the file, read and checked (the form did; it may have changed since)
        else:
            ensure_available(config.data)
        return config

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        if event.worker.group != "setup" or event.state not in (WorkerState.SUCCESS, WorkerState.ERROR):
            return
        button = self.query_one("#start", Button)
        button.disabled = False
        button.label = "Start training (ctrl+s)"
        if event.state == WorkerState.ERROR:
            error = event.worker.error
            hint = "" if isinstance(error, TuitrainError) else f"{type(error).__name__}: "
            self.show_error(f"Cannot start: {hint}{error}")
            return
        from tuitrain.tui.screens.dashboard import Dashboard
        from tuitrain.tui.source import LiveRun

        config = event.worker.result
        if config is not None:
            self.app.push_screen(Dashboard(LiveRun(config, out_dir=self.out_dir)))
