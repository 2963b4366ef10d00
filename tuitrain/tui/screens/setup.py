"""Provides the setup screen: pick a preset, see its network and data, adjust settings, start."""

from __future__ import annotations

import functools
from typing import Any

from rich.table import Table
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, OptionList, Select, Static
from textual.worker import Worker, WorkerState

from tuitrain import config as cfgmod
from tuitrain.errors import TuitrainError

FIELDS = ("optimizer", "lr", "batch_size", "epochs", "activation", "device", "seed", "dataset")


def device_options() -> list[tuple[str, str]]:
    import torch

    cuda = torch.cuda.is_available()
    label = f"cuda ({torch.cuda.get_device_name(0)})" if cuda else "cuda (not available here)"
    return [("auto: " + ("cuda" if cuda else "cpu"), "auto"), ("cpu", "cpu"), (label, "cuda")]


def data_line(dataset: str, data_dir: str = "") -> Text:
    from tuitrain.data import TORCHVISION_NAMES, cache_dir, data_status

    if data_status(dataset, data_dir) == "ready":
        return Text.assemble(("● ready", "bold green"), f"  {dataset}: on disk or generated")
    folder = cache_dir() / TORCHVISION_NAMES.get(dataset, dataset) / "raw"
    return Text.assemble(("● will download", "bold yellow"), f"  {dataset} is fetched on first use (needs internet). ",
                         ("Offline: not available - copy the four IDX files to ", "dim"), str(folder),
                         (" or pass --data-dir.", "dim"))


@functools.lru_cache(maxsize=64)
def network_layers(kind: str, hidden: tuple[int, ...], activation: str, dataset: str) -> tuple[Any, ...]:
    """The summary rows of a network (built once per distinct setting, not on every keystroke)."""
    from tuitrain.config import ModelConfig
    from tuitrain.data import DATASET_SHAPES
    from tuitrain.models import build_model, describe

    shape, outputs = DATASET_SHAPES[dataset]
    model = build_model(ModelConfig(kind=kind, hidden=list(hidden), activation=activation), shape, outputs)
    return tuple(describe(model))


def network_summary(config: cfgmod.Config) -> Table:
    m = config.model
    layers = network_layers(m.kind, tuple(m.hidden), m.activation, config.data.dataset)
    table = Table(box=None, padding=(0, 1), show_header=True, header_style="dim")
    table.add_column("layer", no_wrap=True)
    table.add_column("detail")
    table.add_column("params", justify="right")
    for layer in layers:
        table.add_row(layer.name, f"{layer.kind} {layer.detail}".rstrip(), f"{layer.parameters:,}" if layer.parameters else "")
    table.add_row("", Text("total", "bold"), Text(f"{sum(layer.parameters for layer in layers):,}", "bold"))
    return table


class SetupScreen(Screen):
    """The first screen of bare `tuitrain`; Start builds the Trainer in a worker, then opens the dashboard."""

    BINDINGS = [Binding("ctrl+s", "start", "Start", priority=True), Binding("escape", "app.quit", "Quit")]

    def __init__(self, preset: str | None = None):
        super().__init__()
        self.presets = cfgmod.preset_paths()
        self.preset = preset if preset in self.presets else next(iter(self.presets), None)
        self.base: cfgmod.Config | None = None

    def compose(self) -> ComposeResult:
        with Horizontal(id="setup"):
            with Vertical(id="preset-column"):
                yield Label("Presets", classes="heading")
                yield OptionList(*self.presets, id="presets")
            with VerticalScroll(id="setup-form"):
                yield Static(id="description")
                yield Static(id="data-status")
                with Horizontal(classes="row"):
                    yield Label("Optimizer")
                    yield Select([(o, o) for o in cfgmod.OPTIMIZERS], id="optimizer", allow_blank=False, compact=True)
                    yield Label("Learning rate")
                    yield Input(id="lr", type="number", compact=True)
                with Horizontal(classes="row"):
                    yield Label("Batch size")
                    yield Input(id="batch_size", type="integer", compact=True)
                    yield Label("Epochs")
                    yield Input(id="epochs", type="integer", compact=True)
                with Horizontal(classes="row"):
                    yield Label("Activation")
                    yield Select([(a, a) for a in cfgmod.ACTIVATIONS], id="activation", allow_blank=False, compact=True)
                    yield Label("Seed")
                    yield Input(id="seed", type="integer", compact=True)
                with Horizontal(classes="row"):
                    yield Label("Device")
                    yield Select(device_options(), id="device", allow_blank=False, compact=True)
                    yield Label("Data set")
                    yield Select([(d, d) for d in cfgmod.DATASETS], id="dataset", allow_blank=False, compact=True)
                yield Static(id="setup-error")
                yield Button("Start training (ctrl+s)", variant="success", id="start", compact=True)
                yield Static(id="summary")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#setup-error").display = False
        options = self.query_one("#presets", OptionList)
        if self.preset is not None:
            options.highlighted = list(self.presets).index(self.preset)
            self.load_preset(self.preset)
        options.focus()

    @on(OptionList.OptionHighlighted, "#presets")
    def preset_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        self.load_preset(str(event.option.prompt))

    @on(OptionList.OptionSelected, "#presets")
    def preset_selected(self) -> None:
        self.query_one("#optimizer").focus()

    def load_preset(self, name: str) -> None:
        self.preset = name
        try:
            self.base = cfgmod.load_preset(name)
        except TuitrainError as exc:
            self.show_error(str(exc))
            return
        c = self.base
        values = {"optimizer": c.train.optimizer, "lr": f"{c.train.lr:g}", "batch_size": str(c.train.batch_size),
                  "epochs": str(c.train.epochs), "activation": c.model.activation, "device": c.train.device,
                  "seed": str(c.train.seed), "dataset": c.data.dataset}
        with self.prevent(Input.Changed, Select.Changed):
            for key, value in values.items():
                widget = self.query_one(f"#{key}")
                widget.value = value
        self.query_one("#activation", Select).disabled = c.model.kind == "neuron"
        self.query_one("#description", Static).update(Text.assemble((name, "bold"), "  ", c.description))
        self.refresh_details()

    @on(Input.Changed)
    @on(Select.Changed)
    def settings_changed(self) -> None:
        self.refresh_details()

    def overrides(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in FIELDS:
            widget = self.query_one(f"#{key}")
            value = widget.value
            if isinstance(widget, Input):
                text = value.strip()
                if not text:
                    continue
                try:
                    value = float(text) if key == "lr" else int(text)
                except ValueError:
                    raise TuitrainError(f"{key.replace('_', ' ')}: '{text}' is not a number") from None
            elif value is Select.BLANK or (key == "activation" and widget.disabled):
                continue
            out[key] = value
        return out

    def resolved(self) -> cfgmod.Config:
        from tuitrain.config import resolve_config

        return resolve_config(self.preset, **self.overrides())

    def refresh_details(self) -> None:
        if self.base is None:
            return
        try:
            config = self.resolved()
        except TuitrainError as exc:
            self.show_error(str(exc))
            return
        self.show_error("")
        self.query_one("#summary", Static).update(network_summary(config))
        self.query_one("#data-status", Static).update(
            Text("Data  ", "bold").append_text(data_line(config.data.dataset, config.data.data_dir)))

    def show_error(self, message: str) -> None:
        error = self.query_one("#setup-error", Static)
        error.update(Text(message))
        error.display = bool(message)

    @on(Input.Submitted)
    @on(Button.Pressed, "#start")
    def action_start(self) -> None:
        try:
            config = self.resolved()
        except TuitrainError as exc:
            self.show_error(str(exc))
            return
        button = self.query_one("#start", Button)
        button.disabled = True
        button.label = "Checking data…"
        self.build_trainer(config)

    @work(thread=True, exclusive=True, exit_on_error=False, group="setup")
    def build_trainer(self, config: cfgmod.Config) -> tuple[cfgmod.Config, Any]:
        """Check what can fail before the dashboard opens (device, data on disk or downloadable)."""
        from tuitrain.data import ensure_available
        from tuitrain.engine import resolve_device

        resolve_device(config.train.device)
        ensure_available(config.data)
        return config, None

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

        config, _ = event.worker.result
        self.app.push_screen(Dashboard(LiveRun(config)))
