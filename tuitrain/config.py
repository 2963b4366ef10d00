"""Provides typed run configuration, preset discovery and loading, and validated overrides."""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tuitrain.errors import ConfigError, UsageError, escape, quote

MODEL_KINDS = ("neuron", "mlp", "lenet")
ACTIVATIONS = ("sigmoid", "tanh", "relu", "leaky_relu", "prelu", "identity")
INITS = ("default", "kaiming")
OPTIMIZERS = ("sgd", "momentum", "nesterov", "adagrad", "rmsprop", "adam", "adamw")
DATASETS = ("blobs", "rings", "square", "wave", "mnist", "fashion-mnist", "csv")
DEVICES = ("auto", "cpu", "cuda")
PRECISIONS = ("fp32", "bf16")
DEFAULT_SAMPLES = {"blobs": 2000, "rings": 15000, "square": 10000, "wave": 1000}  # synthetic points, samples = 0
# input shape and output count per data set, known without loading it (summaries, memory estimates)
DATASET_SHAPES: dict[str, tuple[tuple[int, ...], int]] = {
    "blobs": ((2,), 1),
    "rings": ((2,), 3),
    "square": ((1,), 1),
    "wave": ((1,), 1),
    "mnist": ((1, 28, 28), 10),
    "fashion-mnist": ((1, 28, 28), 10),
}


def _choice(options: tuple[str, ...]) -> dict[str, Any]:
    return {"choices": options}


def _range(low: float | None = None, high: float | None = None, *, open_low: bool = False) -> dict[str, Any]:
    return {"low": low, "high": high, "open_low": open_low}


@dataclass
class ModelConfig:
    kind: str = field(default="mlp", metadata=_choice(MODEL_KINDS))
    hidden: list[int] = field(default_factory=lambda: [64])  # units per hidden layer (mlp)
    activation: str = field(default="relu", metadata=_choice(ACTIVATIONS))
    init: str = field(default="default", metadata=_choice(INITS))  # kaiming: He-uniform weights


@dataclass
class DataConfig:
    dataset: str = field(default="blobs", metadata=_choice(DATASETS))
    samples: int = field(default=0, metadata=_range(0, 10**12))  # synthetic points in all; 0 = set's default
    valid_fraction: float = field(default=0.15, metadata=_range(0.0, 0.5, open_low=True))
    test_fraction: float = field(default=0.15, metadata=_range(0.0, 0.5, open_low=True))
    standardize: bool = False  # zero-mean, unit-std inputs (and targets for regression)
    data_dir: str = ""  # where MNIST-type files live; "" = search the usual places
    path: str = ""  # dataset "csv": the file (x1,x2,label for classes; x,y for regression)


@dataclass
class TrainConfig:
    optimizer: str = field(default="sgd", metadata=_choice(OPTIMIZERS))
    lr: float = field(default=0.01, metadata=_range(0.0, 100.0, open_low=True))
    momentum: float = field(default=0.9, metadata=_range(0.0, 1.0))  # momentum and nesterov only
    weight_decay: float = field(default=0.0, metadata=_range(0.0, 1.0))  # L2 (decoupled for adamw)
    batch_size: int = field(default=64, metadata=_range(1, 1_000_000))  # samples per step
    epochs: int = field(default=5, metadata=_range(1, 1_000_000))  # passes over the training split
    seed: int = field(default=0, metadata=_range(0, 2**63 - 1))
    device: str = field(default="auto", metadata=_choice(DEVICES))
    threads: int = field(default=0, metadata=_range(0, 4096))  # torch CPU threads; 0 = automatic (shares busy CPUs)
    histories: bool = True  # record weight/gradient histograms into RUN_DIR/histories.jsonl
    # bf16: matmuls and convolutions in bfloat16 (autocast; weights, optimizer and loss stay float32)
    precision: str = field(default="fp32", metadata=_choice(PRECISIONS))


@dataclass
class Config:
    name: str = "custom"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_toml(self) -> str:
        return dump_toml(self.to_dict())


SECTIONS = {"model": ModelConfig, "data": DataConfig, "train": TrainConfig}


# ----------------------------------------------------------------------------- presets on disk


def builtin_preset_dir() -> Path:
    """Presets ship inside the wheel; in a source checkout they sit beside the package."""
    packaged = Path(__file__).parent / "presets"
    return packaged if packaged.is_dir() else Path(__file__).parent.parent / "presets"


def user_preset_dir() -> Path:
    config_home = os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config"
    return Path(config_home) / "tuitrain" / "presets"


def preset_paths() -> dict[str, Path]:
    """Name -> file for every preset; a user preset shadows a built-in of the same name."""
    found: dict[str, Path] = {}
    for folder in (builtin_preset_dir(), user_preset_dir()):
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                found[path.stem] = path
    return found


def resolve_preset(name_or_path: str) -> Path:
    shown = quote(name_or_path if len(name_or_path) <= 200 else name_or_path[:200] + "...")  # one readable line
    path = Path(name_or_path).expanduser()
    if name_or_path.endswith(".toml") or os.sep in name_or_path:
        import stat

        from tuitrain.files import kind_of

        try:
            mode = path.stat().st_mode
        except (FileNotFoundError, NotADirectoryError):
            raise UsageError(f"preset file not found: {shown}") from None
        except OSError as exc:  # a name too long for the file system (ENAMETOOLONG), a loop of links
            raise UsageError(f"preset file {shown}: {exc.strerror or exc}") from None
        if not stat.S_ISREG(mode):  # a FIFO would block the read, a device never end
            raise UsageError(f"preset file {shown} is {kind_of(mode)}, not a file")
        return path
    presets = preset_paths()
    if name_or_path not in presets:
        known = ", ".join(escape(name) for name in presets) or "none"
        raise UsageError(f"unknown preset {shown} (known: {known}; or give a path to a .toml file)")
    return presets[name_or_path]


def load_preset(name_or_path: str) -> Config:
    path = resolve_preset(name_or_path)
    try:
        raw = tomllib.loads(read_preset_text(path))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{escape(path)}: TOML syntax error: {exc}") from None
    except RecursionError:  # arrays or tables nested thousands deep
        raise ConfigError(f"{escape(path)}: TOML syntax error: values nested too deeply") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else exc
        raise ConfigError(f"{escape(path)}: cannot read: {reason}") from None
    return config_from_dict(raw, source=escape(path), default_name=path.stem, base=path.parent)


def preset_description(path: Path) -> str:
    """The one-line description without validating the whole file (used by `list`)."""
    from tuitrain.files import NotRegularFile

    try:
        return escape(tomllib.loads(read_preset_text(path)).get("description", ""))
    except NotRegularFile as exc:  # a FIFO, socket or device in the presets folder: never read
        return f"(unreadable: {exc.strerror})"
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError, RecursionError):
        return "(unreadable preset file)"


def read_preset_text(path: Path) -> str:
    """A preset file's text: a regular file only (a FIFO or device is refused, never read, so nothing
    blocks), UTF-8 with or without a byte-order mark (editors on Windows add one)."""
    from tuitrain.files import read_regular

    return read_regular(path).decode("utf-8-sig")


# ----------------------------------------------------------------------------- validation


def config_from_dict(
    raw: dict[str, Any],
    source: str = "<config>",
    default_name: str = "custom",
    *,
    base: Path | None = None,
    check_data: bool = True,
) -> Config:
    """The checked configuration. A relative data.path is taken from `base` (the preset's folder; None:
    the working directory) and stored absolute. `check_data=False` leaves the CSV file unread: a finished
    run's settings are shown and compared whether or not its data is still where it was."""
    known_top = {"name", "description", *SECTIONS}
    for key in raw:
        if key not in known_top:
            raise ConfigError(f"{source}: unknown key {quote(key)} (allowed: {', '.join(sorted(known_top))})")
    sections = {}
    for section, cls in SECTIONS.items():
        table = raw.get(section, {})
        if not isinstance(table, dict):
            raise ConfigError(f"{source}: '{section}' must be a table ([{section}])")
        sections[section] = _build_section(cls, table, f"{source}: {section}")
    for key in ("name", "description"):
        if key in raw and not isinstance(raw[key], str):
            raise ConfigError(f"{source}: '{key}' must be a string, got {_show(raw[key])}")
    config = Config(name=raw.get("name", default_name), description=raw.get("description", ""), **sections)
    config.data.path = _data_file(config.data.path, base)
    for key in ("name", "description"):  # printed by `list`, headless output and the app: one plain line
        if not getattr(config, key).isprintable():
            raise ConfigError(
                f"{source}: {key} {quote(getattr(config, key))} contains control characters "
                "(newlines, tabs, escape sequences)"
            )
    check_compatible(config, source, check_data=check_data)
    return config


def _data_file(path: str, base: Path | None) -> str:
    """`path` with `~` expanded, made absolute: config.toml must name the same file whatever folder a
    resume, branch or export starts in."""
    if not path:
        return path
    try:
        return os.path.abspath(os.path.join(base or os.getcwd(), os.path.expanduser(path)))
    except OSError:  # the working directory was removed: leave it for the open to report
        return path


def _build_section(cls: type, table: dict[str, Any], where: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    values = {}
    for key, value in table.items():
        if key not in fields:
            raise ConfigError(f"{where}.{escape(key)}: unknown key (allowed: {', '.join(fields)})")
        values[key] = _check_value(fields[key], value, f"{where}.{key}")
    return cls(**values)


def _show(value: Any, limit: int = 60) -> str:
    """repr(value) for a message, cut to `limit` characters (a list nested thousands deep included)."""
    try:
        text = repr(value)
    except RecursionError:
        text = f"<{type(value).__name__} nested too deeply>"
    return text if len(text) <= limit else text[: limit - 3] + "..."


MAX_LAYERS = 1000  # hidden layers in an mlp


def _check_value(spec: dataclasses.Field[Any], value: Any, where: str) -> Any:
    kind = spec.type if isinstance(spec.type, str) else spec.type.__name__
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
    elif kind == "int":
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
    elif kind == "float":
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        try:
            value = float(value)
        except OverflowError:  # an integer beyond any float
            value = math.inf
        if not math.isfinite(value):
            raise ConfigError(f"{where}: expected a finite number, got {_show(value)}")
    elif kind == "str":
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {_show(value)}")
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes in a file name: config.toml (UTF-8) cannot hold them
            raise ConfigError(
                f"{where}: {quote(value)} is not UTF-8 text and cannot be recorded in config.toml; rename it"
            ) from None
    elif kind == "list[int]":
        if not isinstance(value, list) or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{where}: expected a list of integers, got {_show(value)}")
        if any(v < 1 or v > 100_000 for v in value):
            raise ConfigError(f"{where}: layer sizes must be between 1 and 100000, got {_show(value)}")
        if len(value) > MAX_LAYERS:
            raise ConfigError(f"{where}: at most {MAX_LAYERS} hidden layers, got {len(value)}")
    meta = spec.metadata
    if "choices" in meta and value not in meta["choices"]:
        raise ConfigError(f"{where}: {quote(value)} is not one of {', '.join(meta['choices'])}")
    low, high = meta.get("low"), meta.get("high")
    if low is not None and (value < low or (meta.get("open_low") and value == low)):
        bound = ">" if meta.get("open_low") else ">="
        raise ConfigError(f"{where}: {_show(value)} is out of range (must be {bound} {low})")
    if high is not None and value > high:
        raise ConfigError(f"{where}: {_show(value)} is out of range (must be <= {high})")
    return value


def check_setting(section: str, key: str, value: Any, where: str) -> Any:
    """One setting checked like a preset value; `where` names it in the error (a flag, a field label)."""
    spec = {f.name: f for f in dataclasses.fields(SECTIONS[section])}[key]
    return _check_value(spec, value, where)


IMAGE_SETS = ("mnist", "fashion-mnist")


def data_shape(data: DataConfig) -> tuple[tuple[int, ...], int]:
    """Input shape and output count of the data set (a CSV file is read and checked for it)."""
    if data.dataset == "csv":
        from tuitrain.data.csv_files import load_table

        table = load_table(data.path)
        return (table.inputs,), table.outputs
    return DATASET_SHAPES[data.dataset]


def sample_count(data: DataConfig) -> int:
    """Samples in all, for synthetic and CSV sets (not the image sets)."""
    if data.dataset == "csv":
        from tuitrain.data.csv_files import load_table

        return len(load_table(data.path).x)
    return data.samples or DEFAULT_SAMPLES[data.dataset]


def check_compatible(config: Config, source: str = "<config>", *, check_data: bool = True) -> None:
    """Refuse network/data pairs that cannot work, before any data is loaded."""
    kind, dataset = config.model.kind, config.data.dataset
    if check_data and dataset == "csv" and config.data.path:  # without one, resolve_config asks for --data FILE
        data_shape(config.data)  # the file's problems, with line numbers, before anything loads
    if kind == "lenet" and dataset not in IMAGE_SETS:
        raise ConfigError(
            f"{source}: the lenet network needs 28x28 images (mnist or fashion-mnist), not {quote(dataset)}"
        )
    if kind == "neuron" and dataset != "blobs":
        raise ConfigError(f"{source}: the single neuron is a binary classifier for 'blobs', not {quote(dataset)}")


def apply_overrides(config: Config, **overrides: Any) -> Config:
    """Return a copy with CLI overrides (None = keep) validated like preset values."""
    where = {
        "epochs": "train",
        "lr": "train",
        "optimizer": "train",
        "batch_size": "train",
        "seed": "train",
        "device": "train",
        "threads": "train",
        "histories": "train",
        "precision": "train",
        "activation": "model",
        "dataset": "data",
        "data_dir": "data",
    }
    raw = config.to_dict()
    if overrides.get("data_path") is not None:  # --data FILE: your own CSV
        dataset = overrides.get("dataset")
        if dataset is not None and dataset != "csv":
            raise UsageError(f"--data trains on your CSV file: it cannot go with --dataset {quote(dataset)}")
        path = str(overrides.pop("data_path"))
        try:
            check_setting("data", "path", path, "--data")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
        raw["data"]["dataset"], raw["data"]["path"] = "csv", path
    for key, value in overrides.items():
        if value is None:
            continue
        section = where[key]
        spec = {f.name: f for f in dataclasses.fields(SECTIONS[section])}[key]
        try:
            raw[section][key] = _check_value(spec, value, f"--{key.replace('_', '-')}")
        except ConfigError as exc:
            raise UsageError(str(exc)) from None
    try:
        return config_from_dict(raw, source=config.name, default_name=config.name)
    except ConfigError as exc:
        raise UsageError(str(exc)) from None


# ----------------------------------------------------------------------------- TOML out


def resolve_config(preset: str, **overrides: Any) -> Config:
    """PRESET (a name or a TOML path) with the command line's overrides applied and checked."""
    config = apply_overrides(load_preset(preset), **overrides)
    if config.data.dataset == "csv" and not config.data.path:
        raise UsageError(f"{preset}: dataset csv needs its file: --data FILE.csv (or data.path in the preset)")
    return config


TOML_ESCAPES = {"\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def _toml_string(text: str) -> str:
    """A TOML basic string: control characters escaped too (a raw newline in a path would make the
    file unreadable)."""
    out = []
    for c in text:
        if c in TOML_ESCAPES:
            out.append(TOML_ESCAPES[c])
        elif c < " " or c == "\x7f":
            out.append(f"\\u{ord(c):04x}")
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    return _toml_string(str(value))


def dump_toml(data: dict[str, Any]) -> str:
    """Enough TOML for a flat config: top-level scalars, then one table per section."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in data.items() if not isinstance(v, dict)]
    for key, table in data.items():
        if isinstance(table, dict):
            lines += ["", f"[{key}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    return "\n".join(lines) + "\n"
