"""Provides the dashboard's controls, each defined once: its keys, its footer label, its help and palette
text, when it is available (else why not: the toast a press shows) and the call it makes.

The dashboard's bindings, footer, `?` help (and README's key table, which a test keeps equal to it),
command palette and unavailable-reason toasts are all read from CONTROLS. A new control is one entry
here (and its row in README's table).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from tuitrain.tui.screens.steering import SAID, Reply, Steering

Reason = Callable[[Steering], str | None]

WATCHED = "a watched run is steered by its own process (read-only here)"
STARTING = "the run is still starting"


def always(steering: Steering) -> str | None:
    return None


def steerable(steering: Steering) -> str | None:
    """A run this app started (a watched one is steered by its own process)."""
    return None if steering.steerable else WATCHED


def training(steering: Steering) -> str | None:
    """A steerable run that trains now (running or paused) and has not ended."""
    h = steering.history
    if not steering.steerable:
        return WATCHED
    if h.ended:
        return f"the run has ended ({h.state}); r starts it again"
    if not steering.training():
        return STARTING
    return None


def paused(steering: Steering) -> str | None:
    reason = training(steering)
    if reason is None and steering.history.state != "paused":
        return "n steps once while paused: press space first"
    return reason


def finder_ready(steering: Steering) -> str | None:
    """The LR finder starts from the paused weights of a run that trains (not after its end)."""
    h = steering.history
    if not steering.steerable:
        return WATCHED
    if h.ended:
        return f"the run has ended ({h.state}): `tuitrain lr-find --branch RUN_DIR` tests from its checkpoint"
    if not steering.training():
        return STARTING
    if h.state != "paused":
        return "pause first (space): the finder starts from the paused weights"
    return None


def startable(steering: Steering) -> str | None:
    if not steering.steerable:
        return WATCHED
    if steering.history.state == "starting":  # a second start would queue behind this one, unseen
        return STARTING
    return None


def diverged(steering: Steering) -> str | None:
    if not steering.steerable:
        return WATCHED
    if steering.history.state != "diverged":
        return "R goes back to the last good checkpoint after a divergence (NaN loss); this run has not diverged"
    return None


def stopped(steering: Steering) -> str | None:
    """A run with a saved checkpoint that no longer trains (a branch starts from it)."""
    if steering.run_dir() is None or steering.history.state == "starting":
        return "no run directory yet: the run is still starting"
    if steering.training():
        return "stop the run first (s): a branch starts from a saved checkpoint"
    return None


def toggle_histories(steering: Steering) -> Reply:
    """Weight and gradient histories recorded, or not, from the next step on."""
    controls = steering.controls
    if controls is None:
        return SAID
    asked = not controls.histories
    controls.set_histories(asked)
    if controls.histories != asked:  # the run's config records none (--no-histories): nothing to turn on
        return Reply("this run records no histories (started with --no-histories)", timeout=3)
    return Reply("histories on" if asked else "histories off", timeout=2)


@dataclass(frozen=True)
class Control:
    """One control of the dashboard. It either steers the run (`steer`, a call on the UI-free Steering
    and its RunControl, for a steerable run only) or changes the view (`view`, a Dashboard action)."""

    name: str  # its binding runs the dashboard's action `control('<name>')`
    keys: str  # Textual key names, comma-separated
    label: str  # the footer's one word ("": never in the footer)
    help: str  # the `?` help, README's key table and the key's tooltip
    palette: str = ""  # its name in the command palette ("": not there)
    available: Reason = always  # None when it works now, else why not (the toast a press shows)
    steer: Callable[[Steering], Reply] | None = None
    view: str = ""  # a Dashboard action (Textual action string)
    key_display: str = ""
    priority: bool = False  # a priority binding (before the focused widget's own keys)
    while_starting: bool = False  # in the footer while the run starts, as once it trains (a press says why it waits)

    @property
    def action(self) -> str:
        return f"control('{self.name}')"


CONTROLS: tuple[Control, ...] = (  # footer order: the most needed first, so narrow terminals still show them
    Control("help", "question_mark", "Keys", "this list of keys", "Keys: list every key", view="help"),
    Control(
        "quit",
        "q",
        "Quit",
        "quit (asks first while training; saves a checkpoint)",
        "Quit (asks first while training)",
        view="quit_run",
    ),
    Control(
        "pause",
        "space",
        "Pause",
        "pause / resume training",
        "Pause / resume",
        training,
        Steering.toggle_pause,
        priority=True,
        while_starting=True,
    ),
    Control("panel", "tab", "Panel", "next panel", "Panel: next", view="panel(1)", priority=True),
    Control("panel_back", "shift+tab", "", "previous panel", "Panel: previous", view="panel(-1)", priority=True),
    Control(
        "step", "n", "Step", "one optimizer step (while paused)", "Single step (while paused)", paused, Steering.step
    ),
    Control(
        "lr_find",
        "f",
        "FindLR",
        "LR range test from the paused weights, on a copy: pick a learning rate on its curve",
        "LR finder: range test from the paused weights, pick a learning rate",
        finder_ready,
        view="lr_find",
    ),
    Control(
        "lr_up",
        "plus,equals_sign",
        "LR×2",
        "learning rate ×2 (live; after the end, for the next start)",
        "Learning rate ×2",
        steerable,
        lambda steering: steering.lr(2.0),
        key_display="+",
    ),
    Control(
        "lr_down",
        "minus",
        "LR÷2",
        "learning rate ÷2 (live; after the end, for the next start)",
        "Learning rate ÷2",
        steerable,
        lambda steering: steering.lr(0.5),
        key_display="-",
    ),
    Control(
        "stop",
        "s",
        "Stop",
        "stop the run and save a resumable checkpoint",
        "Stop the run (saves a resumable checkpoint)",
        training,
        Steering.stop,
        while_starting=True,
    ),
    Control(
        "restart",
        "r",
        "Restart",
        "start again with the same settings (a new run directory)",
        "Restart with the same settings",
        startable,
        Steering.restart,
        while_starting=True,
    ),
    Control(
        "recover",
        "R",
        "Recover",
        "after a divergence: last good checkpoint, half the learning rate",
        "Recover a diverged run (last good checkpoint, half the learning rate)",
        diverged,
        Steering.recover,
    ),
    Control(
        "histories",
        "h",
        "Hist",
        "weight and gradient histories on/off (recorded from the next step)",
        "Histories on/off (weight and gradient recording)",
        training,
        toggle_histories,
        while_starting=True,
    ),
    Control("log_y", "l", "", "log scale on the loss chart", "Toggle log scale (loss chart)", view="log_y"),
    Control(
        "less_smoothing",
        "left_square_bracket",
        "",
        "less smoothing of the training loss",
        "Less smoothing",
        view="smoothing(-1)",
    ),
    Control(
        "more_smoothing",
        "right_square_bracket",
        "",
        "more smoothing of the training loss",
        "More smoothing",
        view="smoothing(1)",
    ),
    Control("charts", "1", "", "charts panel", "Panel: charts", view="show_panel('charts')"),
    Control("params", "2", "", "parameters panel", "Panel: parameters", view="show_panel('params')"),
    Control("predictions", "3", "", "predictions panel", "Panel: predictions", view="show_panel('predictions')"),
    Control(
        "screenshot",
        "P",
        "",
        "save the screen as SVG in the run directory",
        "Save the screen as SVG (a picture for slides)",
        view="screenshot",
    ),
    Control(
        "units",
        "4",
        "",
        "units panel: what each hidden unit learned",
        "Panel: units (what each hidden unit learned)",
        view="show_panel('units')",
    ),
    Control(
        "overlay",
        "o",
        "Overlay",
        "overlay earlier runs on the charts (again: choose)",
        "Overlay earlier runs on the charts",
        view="overlay",
    ),
    Control(
        "runs",
        "v",
        "Runs",
        "the runs screen: sort, filter, compare, branch",
        "Runs: every run in this folder (sort, compare, branch)",
        view="runs",
    ),
    Control(
        "setup",
        "N",
        "",
        "a new run: back to the setup screen (asks first while training; saves a checkpoint)",
        "New run: back to the setup screen",
        view="setup",
    ),
    Control(
        "branch",
        "b",
        "Branch",
        "after the run stops: a new run from its checkpoint",
        "Branch: a new run from this run's checkpoint (after it stops)",
        stopped,
        view="branch",
    ),
)

BY_NAME = {control.name: control for control in CONTROLS}


def shown(control: Control, steering: Steering) -> bool:
    """Whether its key works now (else a press says why): what the footer shows."""
    if control.while_starting and steering.steerable and steering.history.state == "starting":
        return True
    return control.available(steering) is None


def perform(control: Control, steering: Steering) -> Reply:
    """A steering control's call, or why it does nothing now (a view control answers SAID: the
    dashboard does it)."""
    reason = control.available(steering)
    if reason is not None:
        return Reply(reason)
    return control.steer(steering) if control.steer is not None else SAID
