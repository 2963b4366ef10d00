"""Provides run comparison: records read from run directories, what differs, labels, ranking."""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import pairwise
from pathlib import Path
from typing import Any

from tuitrain.config import DEFAULT_SAMPLES, IMAGE_SETS, Config
from tuitrain.errors import TuitrainError, escape
from tuitrain.fmt import fmt_age, fmt_score
from tuitrain.store.run_dir import (
    METRICS,
    check_run_dir,
    epoch_history,
    list_runs,
    load_run_config,
    read_events,
    run_row,
)

# keys that never explain a difference in results: where and how fast it ran, the words about it
IGNORED_KEYS = ("description", "train.threads", "train.device", "data.data_dir", "train.histories")
SHORT_NAMES = {"train.optimizer": "", "name": "", "train.batch_size": "batch", "model.hidden": "hidden"}
FAILED = ("diverged", "failed", "crashed", "aborted", "damaged", "unreadable")  # ranked after the rest
PENDING = ("running", "queued")  # not finished: a group's numbers (and bands) wait for them


@dataclass
class RunRecord:
    """One run as its files describe it (summary.json, config.toml), without its curves."""

    run_dir: str
    name: str
    preset: str
    status: str
    epoch: int | None
    epochs: int | None
    best: dict[str, Any] | None  # {"epoch", "step", "valid": metrics}
    last_valid: dict[str, Any] | None
    test: dict[str, Any] | None
    updated_at: float
    config: dict[str, Any] = field(default_factory=dict)  # flattened: {"train.lr": 0.01, ...}
    parent: dict[str, Any] | None = None  # a branch: {"run_dir", "checkpoint", "epoch", "step"}
    problem: str | None = None
    # a crashed run: {"from", "to", "step"}, the epochs recorded after its last checkpoint (`epoch`, at
    # `step`), which --resume trains again (tuitrain.store.run_dir.resume_point)
    lost: dict[str, Any] | None = None

    @property
    def optimizer(self) -> str:
        return str(self.config.get("train.optimizer", "?"))

    @property
    def lr(self) -> float | None:
        value = self.config.get("train.lr")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def batch_size(self) -> int | None:
        value = self.config.get("train.batch_size")
        return value if isinstance(value, int) else None

    @property
    def best_valid(self) -> dict[str, Any] | None:
        return (self.best or {}).get("valid")

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_dir": self.run_dir,
            "name": self.name,
            "preset": self.preset,
            "status": self.status,
            "epoch": self.epoch,
            "epochs": self.epochs,
            "best": self.best,
            "last_valid": self.last_valid,
            "test": self.test,
            "optimizer": self.optimizer,
            "lr": self.lr,
            "batch_size": self.batch_size,
            "updated_at": self.updated_at,
            "parent": self.parent,
            "problem": self.problem,
            "lost": self.lost,
        }


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"train": {"lr": 0.1}} -> {"train.lr": 0.1}; lists become tuples so values compare and hash."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = tuple(value) if isinstance(value, list) else value
    return flat


def settings(config: Config) -> dict[str, Any]:
    """The settings a run trained with, flattened: those its network, data and optimizer do not use left
    out (LeNet has no hidden sizes, Adam no momentum), a synthetic set's default point count filled in."""
    flat = flatten(config.to_dict())
    model, data = config.model, config.data
    unused = {
        "model.hidden": model.kind != "mlp",
        "model.activation": model.kind == "neuron",
        "data.samples": data.dataset not in DEFAULT_SAMPLES,
        "data.test_fraction": data.dataset in IMAGE_SETS,
        "data.path": data.dataset != "csv",
        "train.momentum": config.train.optimizer not in ("momentum", "nesterov"),
    }
    for key in [key for key, skip in unused.items() if skip]:
        flat.pop(key, None)
    if data.dataset in DEFAULT_SAMPLES:
        flat["data.samples"] = data.samples or DEFAULT_SAMPLES[data.dataset]
    return flat


def record_from_row(row: dict[str, Any]) -> RunRecord:
    """A `runs.list_runs` row with its configuration and parent added."""
    problem = row.get("problem")
    try:
        config = settings(load_run_config(row["run_dir"]))
    except TuitrainError as exc:
        config = {}
        problem = problem or str(exc)
    parent = row.get("parent")
    return RunRecord(
        run_dir=row["run_dir"],
        name=row["name"],
        preset=str(row["preset"]),
        status=str(row["status"]),
        epoch=row.get("epoch"),
        epochs=row.get("epochs"),
        best=row.get("best"),
        last_valid=row.get("last_valid"),
        test=row.get("test"),
        updated_at=float(row.get("updated_at") or 0.0),
        config=config,
        parent=parent if isinstance(parent, dict) else None,
        problem=problem,
        lost=row.get("lost"),
    )


def load_records(out_dir: str | Path) -> list[RunRecord]:
    """Every run under `out_dir`, oldest first."""
    return [record_from_row(row) for row in list_runs(out_dir)]


def load_run_records(run_dirs: Iterable[str | Path]) -> list[RunRecord]:
    """The runs named (each checked to be a run directory), in the order given."""
    records = []
    for run_dir in run_dirs:
        row = run_row(check_run_dir(run_dir))
        assert row is not None  # check_run_dir found its config.toml
        records.append(record_from_row({**row, "run_dir": str(run_dir)}))
    return records


# ----------------------------------------------------------------------------- differences and names


def differing_keys(records: Sequence[RunRecord]) -> list[str]:
    """Configuration keys whose values are not the same in every run (runtime settings left out)."""
    if len(records) < 2:
        return []
    keys: list[str] = []
    for record in records:
        keys += [k for k in record.config if k not in keys]
    missing = object()
    return [k for k in keys if k not in IGNORED_KEYS and len({repr(r.config.get(k, missing)) for r in records}) > 1]


def fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple):
        return "x".join(str(v) for v in value) or "-"
    return str(value)


def short_key(key: str) -> str:
    return SHORT_NAMES.get(key, key.rsplit(".", 1)[-1])


def labels(records: Sequence[RunRecord]) -> list[str]:
    """A name per run from what differs between them (`adam lr=0.001`); the run's own name where nothing does."""
    keys = sorted(differing_keys(records), key=lambda k: (k not in ("name", "train.optimizer"), k))
    # the momentum optimizers' one setting, the same in every run that has it, says nothing the
    # optimizer's name does not ("momentum", not "momentum momentum=0.9")
    if (
        "train.optimizer" in keys
        and len({repr(r.config["train.momentum"]) for r in records if "train.momentum" in r.config}) == 1
    ):
        keys = [k for k in keys if k != "train.momentum"]
    names = []
    for record in records:
        parts = []
        for key in [key for key in keys if key in record.config]:  # a setting the run does not use: no word
            short, value = short_key(key), fmt_value(record.config[key])
            parts.append(value if not short else f"{short}={value}")
        if record.parent is not None:
            parts.append(f"branch@{record.parent.get('epoch', '?')}")
        names.append(" ".join(parts) or record.name)
    counts: dict[str, int] = {}
    for n in names:
        counts[n] = counts.get(n, 0) + 1
    return [f"{n} ({r.name})" if counts[n] > 1 and n != r.name else n for n, r in zip(names, records, strict=True)]


# ----------------------------------------------------------------------------- ranking


def score(metrics: dict[str, Any] | None) -> tuple[float, float] | None:
    """Higher is better: accuracy where there is one, then lower loss; None without numbers."""
    if not metrics or not isinstance(metrics.get("loss"), (int, float)) or not math.isfinite(metrics["loss"]):
        return None
    accuracy = metrics.get("accuracy")
    return (float(accuracy) if isinstance(accuracy, (int, float)) else 0.0, -float(metrics["loss"]))


def headline(record: RunRecord) -> tuple[str, dict[str, Any] | None]:
    """What a run is ranked on: its test metrics when it has them, else its best validation."""
    if record.test:
        return "test", record.test
    return "valid", record.best_valid


def ranked(records: Sequence[RunRecord]) -> list[RunRecord]:
    """Best first: test metrics (else best validation); failed and unmeasured runs last."""

    def key(record: RunRecord) -> tuple[int, float, float]:
        s = score(headline(record)[1])
        group = 2 if s is None else (1 if record.status in FAILED else 0)
        return (group, -(s or (0.0, 0.0))[0], -(s or (0.0, 0.0))[1])

    return sorted(records, key=key)


# ----------------------------------------------------------------------------- curves


@dataclass
class Curves:
    """A run's timeline for overlays: per epoch (train/valid) and per recorded step (train)."""

    epochs: list[dict[str, Any]]
    steps: list[dict[str, Any]]
    offset: int = 0  # bytes of metrics.jsonl read so far
    events: list[dict[str, Any]] = field(default_factory=list)
    until_step: int | None = None  # a crashed run: its last checkpoint; what came after is lost

    def update(self, run_dir: str | Path) -> bool:
        """Read what the run appended since the last call; True when something new came."""
        new, self.offset = read_events(Path(run_dir) / METRICS, self.offset)
        if not new:
            return False
        self.events += [e for e in new if e.get("event") in ("start", "epoch", "step")]
        self._derive()
        return True

    def keep_until(self, step: int | None) -> bool:
        """Count the run only to `step` (a crashed run's last checkpoint; None: all); True when that changed."""
        if step == self.until_step:
            return False
        self.until_step = step
        self._derive()
        return True

    def _derive(self) -> None:
        self.epochs = epoch_history(self.events)
        self.steps = step_history(self.events)
        if self.until_step is not None:
            last = self.until_step
            self.epochs = [e for e in self.epochs if isinstance(e.get("step"), int) and e["step"] <= last]
            self.steps = [s for s in self.steps if isinstance(s.get("step"), int) and s["step"] <= last]


def step_history(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Step events as the run's timeline: a resume drops the steps it redoes."""
    steps: list[dict[str, Any]] = []
    for event in events:
        if event.get("event") == "start":
            first = (event.get("start_epoch") or 0) * (event.get("steps_per_epoch") or 0)
            resumed_at = event.get("start_step", first)
            steps = [s for s in steps if s.get("step", 0) <= resumed_at]
        elif event.get("event") == "step":
            steps.append(event)
    return steps


# ----------------------------------------------------------------------------- tables


def fmt_epochs(r: RunRecord) -> str:
    """ "434/2000", and for a crashed run the epochs its crash lost: "434/2000 (435-571 lost)"."""
    text = f"{r.epoch if r.epoch is not None else '?'}/{r.epochs if r.epochs is not None else '?'}"
    return text + (f" ({lost_range(r.lost)} lost)" if r.lost else "")


def lost_range(lost: dict[str, Any]) -> str:
    first, last = lost.get("from"), lost.get("to")
    return f"epoch {first}" if first == last else f"epochs {first}-{last}"


def mixed(records: Sequence[RunRecord]) -> str | None:
    """What makes the runs' scores incomparable: different presets or data sets (None when all agree)."""
    known = [r for r in records if r.config]
    what = []
    if len({r.preset for r in records}) > 1:
        what.append("presets")
    data_keys = ("data.dataset", "data.path", "data.samples")
    if len({tuple(repr(r.config.get(k)) for k in data_keys) for r in known}) > 1:
        what.append("data sets")
    if not what:
        return None
    return f"these runs differ in {' and '.join(what)}: their scores are not measured on the same task"


def ranking_table(records: Sequence[RunRecord], now: float | None = None) -> list[str]:
    """The ranked runs as aligned lines: rank, label, status, epochs, best/last validation, test, age."""
    now = time.time() if now is None else now
    order = ranked(records)
    names = dict(
        zip((r.run_dir for r in records), labels(records) if len(records) > 1 else ["-"] * len(records), strict=True)
    )
    table = [("#", "RUN", "WHAT DIFFERS", "STATUS", "EPOCHS", "BEST VALID", "LAST VALID", "TEST", "AGE")]
    for rank, r in enumerate(order, 1):
        table.append(
            (
                str(rank),
                escape(r.name),
                escape(names[r.run_dir]),
                escape(r.status),
                fmt_epochs(r),
                fmt_score(r.best_valid),
                fmt_score(r.last_valid),
                fmt_score(r.test),
                fmt_age(now - r.updated_at),
            )
        )
    lines = align(table)
    note = mixed(records)
    return [*lines, f"note: {note}"] if note else lines


def diff_table(records: Sequence[RunRecord]) -> list[str]:
    """The configuration keys that differ, one row each, a column per run in ranking order."""
    order = ranked(records)
    known = [r for r in order if r.config]
    unknown = [r for r in order if not r.config]  # config.toml unreadable: nothing can be said about it
    keys = differing_keys(known)
    if not keys and not unknown:
        return ["configurations: identical" if len(order) > 1 else "configurations: one run"]
    lines = []
    if keys:
        table = [("KEY", *(f"#{i}" for i in range(1, len(order) + 1)))]
        table += [
            (key, *(escape(fmt_value(r.config.get(key, "-"))) if r.config else "?" for r in order)) for key in keys
        ]
        lines = align(table)
    if unknown:
        others = "; the others are identical" if not keys and len(known) > 1 else ""
        names = ", ".join(escape(r.name) for r in unknown)
        lines.append(f"configurations unknown (config.toml unreadable): {names}{others}")
    return lines


def align(table: Sequence[Sequence[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)).rstrip() for row in table]


def comparison(records: Sequence[RunRecord]) -> dict[str, Any]:
    """The JSON form: the runs best first (with rank and label) and the keys that differ."""
    order = ranked(records)
    names = labels(order)
    keys = differing_keys(order)
    return {
        "event": "compare",
        "runs": [
            {"rank": i, "label": name, **r.to_dict(), "ranked_on": headline(r)[0]}
            for i, (r, name) in enumerate(zip(order, names, strict=False), 1)
        ],
        "differs": {key: [r.config.get(key) for r in order] for key in keys},
        "note": mixed(order),
        "ranked_on": metric_name(order),
        "groups": [g.to_dict() for g in make_groups(order)],
    }


# ----------------------------------------------------------------------------- seed groups and noise
#
# Runs that differ only by their seed measure one configuration several times: a group. Groups are
# ranked on the mean of their runs' ranking metric (test accuracy, else best validation accuracy; loss
# for regression), and two groups next to each other in that order are called tied when their
# difference is within the seeds' noise: Welch's unequal-variances t-test (B. L. Welch, "The
# generalization of 'Student's' problem when several different population variances are involved",
# Biometrika 34, 1947) at the 5% level when both have at least two runs, else their min-max ranges
# overlapping (one run says nothing about the spread).

ALPHA = 0.05  # the t-test's level: p below it and the groups differ
SEED_KEYS = ("train.seed",)


def group_key(record: RunRecord) -> str:
    """What a run's group is known by: its configuration less the seed and the runtime settings (and
    its parent, for a branch); a run whose configuration is unreadable is a group of its own."""
    if not record.config:
        return f"unknown:{record.run_dir}"
    kept = sorted((k, repr(v)) for k, v in record.config.items() if k not in IGNORED_KEYS and k not in SEED_KEYS)
    parent = repr(sorted((record.parent or {}).items()))
    return repr((kept, parent))


def metric_value(record: RunRecord) -> float | None:
    """The one number a run is ranked on: accuracy (a fraction) where its headline has one, else loss."""
    metrics = headline(record)[1]
    if score(metrics) is None or metrics is None:
        return None
    accuracy = metrics.get("accuracy")
    return float(accuracy) if isinstance(accuracy, (int, float)) else float(metrics["loss"])


@dataclass
class Group:
    """Runs differing only by seed, with their ranking metric's statistics (failed runs, and runs still
    queued or training, left out: a live group's numbers grow as its runs finish)."""

    label: str
    records: list[RunRecord]
    values: list[float]  # the measured runs' metric, in the records' order
    failed: list[RunRecord]  # runs that diverged, failed or crashed, or have no numbers
    higher_better: bool = True
    rank: int = 0
    tied: bool = False  # shares its rank with the group above it
    verdict: dict[str, Any] | None = None  # against the group above: {"rule", "p", "tied"}
    pending: list[RunRecord] = field(default_factory=list)  # runs still queued or training

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return sum(self.values) / self.n if self.values else None

    @property
    def std(self) -> float | None:
        """The sample standard deviation (n - 1 in the denominator); None below two runs."""
        if self.n < 2:
            return None
        mean = sum(self.values) / self.n
        return math.sqrt(sum((v - mean) ** 2 for v in self.values) / (self.n - 1))

    @property
    def low(self) -> float | None:
        return min(self.values) if self.values else None

    @property
    def high(self) -> float | None:
        return max(self.values) if self.values else None

    def failure_note(self) -> str | None:
        """ "1 of 3 runs diverged" (left out of the numbers), "2 of 3 runs still training or queued", or
        None when every run was measured."""
        notes = []
        if self.failed:
            statuses = sorted({r.status for r in self.failed})
            notes.append(f"{len(self.failed)} of {len(self.records)} runs {'/'.join(statuses)}")
        if self.pending:
            statuses = sorted({"training" if r.status == "running" else r.status for r in self.pending})
            notes.append(f"{len(self.pending)} of {len(self.records)} runs still {' or '.join(statuses)}")
        return f"{'; '.join(notes)}, left out of the numbers" if notes else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "runs": [r.run_dir for r in self.records],
            "n": self.n,
            "mean": self.mean,
            "std": self.std,
            "min": self.low,
            "max": self.high,
            "rank": self.rank,
            "tied": self.tied,
            "verdict": self.verdict,
            "failed": [r.run_dir for r in self.failed],
            "pending": [r.run_dir for r in self.pending],
            "note": self.failure_note(),
        }


def _label_of(record: RunRecord) -> str:
    return str(record.config.get("name") or record.preset or record.name)


def grouped(records: Sequence[RunRecord]) -> list[list[RunRecord]]:
    """The runs in groups of runs differing only by seed, each group in the order its runs came."""
    groups: dict[str, list[RunRecord]] = {}
    for record in records:
        groups.setdefault(group_key(record), []).append(record)
    return list(groups.values())


def group_labels(groups: Sequence[Sequence[RunRecord]]) -> list[str]:
    """A name per group from what differs between the groups, the seed left out (`adam lr=0.001`)."""
    heads = [
        RunRecord(**{**g[0].__dict__, "config": {k: v for k, v in g[0].config.items() if k not in SEED_KEYS}})
        for g in groups
    ]
    if len(heads) < 2:
        return [_label_of(h) for h in heads]
    return [
        name if name != h.name or len(g) == 1 else _label_of(h)
        for name, h, g in zip(labels(heads), heads, groups, strict=True)
    ]


def make_groups(records: Sequence[RunRecord]) -> list[Group]:
    """The groups best first (mean metric), ranked; adjacent groups within noise share a rank."""
    found = grouped(records)
    higher = not any(
        metric_value(r) is not None and not isinstance((headline(r)[1] or {}).get("accuracy"), (int, float))
        for r in records
    )  # accuracy everywhere: higher is better; a regression's loss: lower
    groups = []
    for label, members in zip(group_labels(found), found, strict=True):
        pending = [r for r in members if r.status in PENDING]
        measured = [r for r in members if r.status not in (*FAILED, *PENDING) and metric_value(r) is not None]
        values = [v for v in (metric_value(r) for r in measured) if v is not None]
        failed = [r for r in members if r not in measured and r not in pending]
        groups.append(Group(label, list(members), values, failed, higher, pending=pending))

    def key(g: Group) -> tuple[int, float]:
        if g.mean is None:
            return (1, 0.0)
        return (0, -g.mean if higher else g.mean)

    groups.sort(key=key)
    for i, g in enumerate(groups):
        g.rank = i + 1
        if i == 0 or g.mean is None or groups[i - 1].mean is None:
            continue
        g.verdict = noise_verdict(groups[i - 1].values, g.values)
        if g.verdict["tied"]:
            g.tied = groups[i - 1].tied = True
            g.rank = groups[i - 1].rank
    return groups


def noise_verdict(a: Sequence[float], b: Sequence[float], alpha: float = ALPHA) -> dict[str, Any]:
    """Whether two samples' difference is within noise: {"rule": "welch"|"range", "p", "tied"}.

    Welch's t-test (two-sided, level `alpha`) when both have two values or more; otherwise whether
    their min-max ranges overlap (a single value: the range is that value)."""
    if len(a) >= 2 and len(b) >= 2:
        t, df = welch_t(a, b)
        p = t_two_sided_p(t, df)
        return {"rule": "welch", "p": p, "t": t, "df": df, "tied": p >= alpha}
    tied = max(min(a), min(b)) <= min(max(a), max(b))
    return {"rule": "range", "p": None, "tied": tied}


def welch_t(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """Welch's t statistic and its Welch-Satterthwaite degrees of freedom (both samples n >= 2)."""
    na, nb = len(a), len(b)
    ma, mb = sum(a) / na, sum(b) / nb
    va = sum((x - ma) ** 2 for x in a) / (na - 1)
    vb = sum((x - mb) ** 2 for x in b) / (nb - 1)
    sa, sb = va / na, vb / nb
    if sa + sb == 0.0:  # no spread in either: equal means are one value, unequal ones surely differ
        return (0.0 if ma == mb else math.copysign(math.inf, ma - mb)), float(na + nb - 2)
    t = (ma - mb) / math.sqrt(sa + sb)
    df = (sa + sb) ** 2 / (sa**2 / (na - 1) + sb**2 / (nb - 1))
    return t, df


def t_two_sided_p(t: float, df: float) -> float:
    """P(|T| >= |t|) for Student's t with `df` degrees of freedom: I_{df/(df+t^2)}(df/2, 1/2)."""
    if math.isnan(t):
        return 1.0
    if math.isinf(t):
        return 0.0
    return regularized_beta(df / (df + t * t), df / 2.0, 0.5)


def regularized_beta(x: float, a: float, b: float) -> float:
    """The regularized incomplete beta function I_x(a, b), by its continued fraction (modified Lentz's
    method, as in Numerical Recipes' betai/betacf), using the symmetry I_x(a,b) = 1 - I_{1-x}(b,a)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(x, a, b) / a
    return 1.0 - front * _beta_fraction(1.0 - x, b, a) / b


def _beta_fraction(x: float, a: float, b: float) -> float:
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def metric_name(records: Sequence[RunRecord]) -> str:
    """What the groups are ranked on, in words: "test accuracy", "best valid loss", "test/best valid accuracy"."""
    measured = [r for r in records if metric_value(r) is not None]
    kinds = sorted({"test" if headline(r)[0] == "test" else "best valid" for r in measured}, reverse=True)
    accuracy = all(isinstance((headline(r)[1] or {}).get("accuracy"), (int, float)) for r in measured)
    return f"{'/'.join(kinds) or 'test'} {'accuracy' if accuracy else 'loss'}"


def fmt_metric(value: float | None, accuracy: bool, spread: bool = False) -> str:
    if value is None:
        return "-"
    if accuracy:
        return f"{100 * value:.2f}" + ("pp" if spread else "%")
    return f"{value:.4g}"


def _seeds(a: Group, b: Group) -> str:
    def runs(n: int) -> str:
        return "1 seed" if n == 1 else f"{n} seeds"

    return runs(a.n) if a.n == b.n else f"{runs(a.n)} and {runs(b.n)}"


def verdict_line(above: Group, below: Group) -> str:
    """One sentence on two adjacent groups: tied (cannot be told apart) or which is ahead, and why."""
    verdict = below.verdict or {}
    seeds = _seeds(above, below)
    if verdict.get("rule") == "welch":
        why = f"Welch's t-test p={verdict['p']:.3g}"
        if verdict["tied"]:
            return f"{above.label} and {below.label} cannot be told apart with {seeds} ({why} >= {ALPHA:g})"
        return f"{above.label} ranks above {below.label}, beyond seed noise ({why} < {ALPHA:g}, {seeds})"
    if verdict.get("tied"):
        return (
            f"{above.label} and {below.label} cannot be told apart with {seeds} "
            "(their min-max ranges overlap; a group of 1 run: no t-test)"
        )
    return (
        f"{above.label} ranks above {below.label} with {seeds} (their min-max ranges do not overlap; "
        "a group of 1 run: no t-test, more seeds (--seeds N) would say whether it is beyond noise)"
    )


def group_table(records: Sequence[RunRecord]) -> list[str]:
    """The groups ranked: rank (`=` where tied), label, n, mean, std, min, max of the metric; then a
    sentence per adjacent pair saying whether their difference is beyond the seeds' noise."""
    groups = make_groups(records)
    accuracy = groups[0].higher_better if groups else True
    head = f"groups ranked on mean {metric_name(records)}"
    table = [("#", "GROUP", "N", "MEAN", "STD", "MIN", "MAX", "RUNS FAILED")]
    for g in groups:
        table.append(
            (
                f"={g.rank}" if g.tied else str(g.rank),
                escape(g.label),
                str(g.n),
                fmt_metric(g.mean, accuracy),
                fmt_metric(g.std, accuracy, spread=True),
                fmt_metric(g.low, accuracy),
                fmt_metric(g.high, accuracy),
                escape(g.failure_note() or "-"),
            )
        )
    lines = [f"{head} (= : within seed noise; Welch's t-test at 5% for n >= 2, else min-max overlap):", *align(table)]
    for above, below in pairwise(groups):
        if below.verdict is not None:
            lines.append(escape(verdict_line(above, below)))
    return lines


def tensorboard_hparams(run_dirs: Sequence[str]) -> list[dict[str, Any]]:
    """Per run, the settings TensorBoard's HParams dashboard shows for it: those that differ between
    the runs (one run, or runs that differ in nothing: its main settings)."""
    from tuitrain.exports.tensorboard_files import choose_hparams

    records = load_run_records(run_dirs)
    return choose_hparams([r.config for r in records], differing_keys(records))
