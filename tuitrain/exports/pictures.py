"""Provides `tuitrain export --format png`: what each unit learned, as PNG pictures and an index.html."""

from __future__ import annotations

import html
import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tuitrain.errors import UsageError, escape
from tuitrain.files import folder_beside, resolve_output, temporary_for
from tuitrain.store.run_dir import CHECKPOINTS, check_run_dir
from tuitrain.training.units import FeatureMaps, UnitCurves, UnitMaps, compute_units

SIDE = 192  # pixels: the long side a small map (24x24 cells, a 5x5 feature map) is upscaled to, nearest
PLOT = (160, 320)  # pixels, height x width of a contribution curve's plot
LINE = 2  # pixels: a curve's thickness
NEGATIVE = torch.tensor([33.0, 102.0, 172.0])  # blue: the diverging scale's -1 (RdBu's ends)
POSITIVE = torch.tensor([178.0, 24.0, 43.0])  # red: its +1; 0 is white
PALETTE = torch.tensor(  # the decision regions' class colours (tab10)
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75],
     [227, 119, 194], [127, 127, 127], [188, 189, 34], [23, 190, 207]],
    dtype=torch.float32,
)  # fmt: skip
OLD = ".old"  # an earlier export is moved to ".<name>.old.tmp-<pid>" while the new one takes its place


@dataclass
class Group:
    """One section of index.html: a layer or stage, its pictures (file name, caption) in order."""

    title: str
    note: str = ""
    pictures: list[tuple[str, str]] = field(default_factory=list)


def write_pictures(run_dir: Path, out: Path, which: str = "best", sample: int = 0) -> list[str]:
    """Write what each unit of the run's `which` checkpoint learned into the folder `out`: unit maps (2-D
    inputs), contribution curves (1-D), or test image `sample` stepped through (images), and index.html.

    Built in `.<name>.tmp-<pid>` beside `out`, then renamed into place, so a failing export leaves the
    previous one whole and a re-export replaces it. Returns one line per thing written, for the user."""
    from tuitrain.data.sets import load_dataset
    from tuitrain.exports.formats import checkpoint_model  # not at the top: formats may import this module
    from tuitrain.training import inspection

    run_dir = check_run_dir(run_dir)
    if which not in CHECKPOINTS:
        raise UsageError(f"--checkpoint must be one of {', '.join(CHECKPOINTS)}, not '{which}'")
    if not (run_dir / CHECKPOINTS[which]).is_file():
        raise UsageError(f"{escape(run_dir)} has no {CHECKPOINTS[which]}: no network to draw (try --checkpoint last)")
    model, config, state, _ = checkpoint_model(run_dir, which)
    data = load_dataset(config.data, config.train.seed)
    units = compute_units(model, data, sample)
    if units.kind == "none":
        raise UsageError(f"{escape(run_dir)}: no pictures to draw: {units.reason}")
    out = _check_output(out)
    groups: list[Group] = []
    with folder_beside(out, out.name + OLD) as build:
        if units.maps is not None:
            regions = inspection.predictions(model, data, inspection.sample_indices(data))
            groups = _maps(build, units.maps, regions.grid)
        elif units.curves is not None:
            groups = _curves(build, units.curves, data.test.x.reshape(-1), data.test.y.reshape(-1).float())
        elif units.features is not None:
            groups = _features(build, units.features, data.class_names)
        title = f"{run_dir.name}: what each unit learned"
        about = f"as of epoch {state['epoch']} (step {state['step']}, {CHECKPOINTS[which]})"
        (build / "index.html").write_text(_index(title, about, groups), encoding="utf-8")
        _swap(build, out)
    lines = [f"{out / _pattern(g)}  ({_count(len(g.pictures))}: {g.title})" for g in groups if g.pictures]
    return [*lines, f"{out / 'index.html'}  (open it in a browser: every picture, by layer)"]


def _pattern(group: Group) -> str:
    """The group's file names in one: `layers.1-unit*.png`, or the one name."""
    names = [name for name, _ in group.pictures]
    if len(names) == 1:
        return names[0]
    common = names[0]
    for name in names[1:]:
        while not name.startswith(common):
            common = common[:-1]
    return common.rstrip("0123456789") + "*.png"


def _count(n: int) -> str:
    return f"{n} picture" + ("" if n == 1 else "s")


# ----------------------------------------------------------------------------- the folder


def _check_output(out: Path) -> Path:
    """Where the export goes: a new folder, or an earlier picture export (never another folder's files)."""
    target = resolve_output(out)
    if target.exists() and not target.is_dir():
        raise UsageError(f"cannot write {escape(out)}: it is not a folder (the pictures go in a folder)")
    if target.is_dir() and not _is_picture_export(target):
        raise UsageError(
            f"cannot write {escape(out)}: it holds other files than an earlier picture export; name a new folder"
        )
    return target


def _is_picture_export(folder: Path) -> bool:
    return all(p.is_file() and (p.suffix == ".png" or p.name == "index.html") for p in folder.iterdir())


def _swap(build: Path, out: Path) -> None:
    """Put the finished `build` folder at `out`, replacing an earlier export (moved aside, then removed)."""
    old = temporary_for(out.with_name(out.name + OLD)) if out.exists() else None
    if old is not None:
        os.rename(out, old)
    try:
        os.rename(build, out)
    except OSError:
        if old is not None:  # the earlier export goes back where it was
            os.rename(old, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _save(folder: Path, name: str, image: torch.Tensor) -> str:
    """`image` (3 x H x W uint8) as folder/name, encoded by torchvision."""
    from torchvision.io import encode_png

    with warnings.catch_warnings():  # torchvision 0.29 says its codecs move to torchcodec: not ours to act on
        warnings.filterwarnings("ignore", message="The image decoding and encoding", category=DeprecationWarning)
        data = encode_png(image.contiguous())
    (folder / name).write_bytes(data.numpy().tobytes())
    return name


# ----------------------------------------------------------------------------- colours and plots


def _diverging(values: torch.Tensor, scale: float) -> torch.Tensor:
    """H x W values as 3 x H x W uint8: -scale blue, 0 white, +scale red."""
    v = (values.float() / max(scale, 1e-12)).clamp(-1, 1).nan_to_num(0.0)[..., None]
    white = torch.full((3,), 255.0)
    rgb = torch.where(v < 0, white + (NEGATIVE - white) * -v, white + (POSITIVE - white) * v)
    return rgb.round().to(torch.uint8).permute(2, 0, 1)


def _grey(values: torch.Tensor) -> torch.Tensor:
    lo, hi = values.min(), values.max()
    g = ((values - lo) / (hi - lo).clamp_min(1e-12) * 255).round().to(torch.uint8)
    return g.expand(3, *g.shape)


def _upscale(image: torch.Tensor, bottom_up: bool = False) -> torch.Tensor:
    """Nearest-neighbour, so each cell stays a crisp square; `bottom_up`: row 0 is the plane's bottom."""
    if bottom_up:
        image = image.flip(1)
    k = max(1, math.ceil(SIDE / max(image.shape[1:])))
    return image.repeat_interleave(k, 1).repeat_interleave(k, 2)


def _plot(curves: list[tuple[torch.Tensor, tuple[int, int, int]]], low: float, high: float) -> torch.Tensor:
    """Line plots of values at evenly spaced x, drawn into a white PLOT (3 x H x W uint8) over [low, high],
    with the zero line in grey; later curves are drawn over earlier ones."""
    height, width = PLOT
    image = torch.full((3, height, width), 255, dtype=torch.uint8)
    span = max(high - low, 1e-12)

    def row(value: float | torch.Tensor) -> torch.Tensor:
        return ((high - torch.as_tensor(value)) / span * (height - 1)).round().clamp(0, height - 1).long()

    if low < 0 < high:
        image[:, row(0.0)] = 210
    rows = torch.arange(height)[:, None]
    for values, colour in curves:
        ys = torch.nn.functional.interpolate(values.float()[None, None], width, mode="linear", align_corners=True)
        at = row(ys[0, 0].nan_to_num(0.0))
        before = torch.cat([at[:1], at[:-1]])  # each column joins the previous one: no gaps on steep parts
        top, bottom = torch.minimum(at, before), torch.maximum(at, before) + LINE - 1
        mask = (rows >= top) & (rows <= bottom)
        image[:, mask] = torch.tensor(colour, dtype=torch.uint8)[:, None]
    return image


# ----------------------------------------------------------------------------- what to draw


def _maps(folder: Path, maps: UnitMaps, grid: torch.Tensor | None) -> list[Group]:
    xmin, xmax, ymin, ymax = maps.bounds
    plane = f"x from {xmin:.3g} to {xmax:.3g}, y from {ymin:.3g} to {ymax:.3g} (as the network sees its inputs)"
    groups = []
    if grid is not None:  # GRID x GRID x classes: P(class), row 0 = bottom
        classes = grid.shape[-1]
        confidence, winner = grid.float().max(-1)
        strength = ((confidence - 1 / classes) / (1 - 1 / classes)).clamp(0, 1)[..., None]  # 0: a coin toss
        colours = 255 + (PALETTE[winner % len(PALETTE)] - 255) * (0.2 + 0.8 * strength)
        image = colours.round().to(torch.uint8).permute(2, 0, 1)
        groups.append(
            Group("decision regions", plane, [(_save(folder, "decision-regions.png", _upscale(image, True)), "")])
        )
    for layer in maps.layers:
        scale = float(layer.activations.abs().max())  # one scale per layer: its units compare
        note = f"each unit's activation (after the activation function) over the input plane: {plane}; white 0, "
        note += f"red up to {scale:.3g}, blue down to {-scale:.3g}"
        group = Group(layer.name, note)
        for j, values in enumerate(layer.activations):
            weights = ", ".join(f"{w:.3g}" for w in layer.weights[j].tolist())
            name = _save(folder, f"{layer.name}-unit{j:03d}.png", _upscale(_diverging(values, scale), True))
            group.pictures.append((name, f"unit {j}: w = ({weights}), b = {float(layer.bias[j]):.3g}"))
        groups.append(group)
    return groups


def _curves(folder: Path, curves: UnitCurves, test_x: torch.Tensor, test_y: torch.Tensor) -> list[Group]:
    low = min(float(curves.contributions.min()), 0.0)
    high = max(float(curves.contributions.max()), 0.0)
    lo, hi = float(curves.x[0]), float(curves.x[-1])
    height, width = PLOT

    def column(x: torch.Tensor | float) -> torch.Tensor:
        return ((torch.as_tensor(x) - lo) / max(hi - lo, 1e-12) * (width - 1)).round().long()

    note = (
        f"each unit's contribution to the output (one scale for all: {low:.3g} to {high:.3g}), x from {lo:.3g} "
        f"to {hi:.3g}; they sum, with the output bias {curves.bias:.3g}, to the fitted curve"
    )
    group = Group(curves.layer, note)
    kinks = [math.nan] * len(curves.contributions) if curves.kinks is None else curves.kinks.tolist()
    for j, (values, kink) in enumerate(zip(curves.contributions, kinks, strict=True)):
        image = _plot([(values, (178, 24, 43))], low, high)
        if lo <= kink <= hi:  # a faint vertical line where the hinge bends
            image[:, :, column(kink)] = torch.tensor([190, 205, 230], dtype=torch.uint8)[:, None]
        name = _save(folder, f"{curves.layer}-unit{j:03d}.png", image)
        group.pictures.append((name, f"unit {j}" + (f", kink at x = {kink:.3g}" if math.isfinite(kink) else "")))
    total = curves.contributions.sum(0) + curves.bias
    inside = (test_x >= lo) & (test_x <= hi)
    shown, points = test_x[inside], test_y[inside]
    low = min(float(total.min()), float(curves.output.min()), float(points.min()) if len(points) else math.inf)
    high = max(float(total.max()), float(curves.output.max()), float(points.max()) if len(points) else -math.inf)
    image = _plot([(curves.output, (0, 0, 0)), (total, (178, 24, 43))], low, high)
    rows = ((high - points) / max(high - low, 1e-12) * (height - 1)).round().long()
    for dr, dc in ((0, 0), (0, 1), (1, 0), (1, 1)):  # the test points: blue, 2x2 pixels each
        at = (rows + dr).clamp(0, height - 1), (column(shown) + dc).clamp(0, width - 1)
        image[:, at[0], at[1]] = NEGATIVE.to(torch.uint8)[:, None]
    note = "black: the network's output; red: the contributions summed plus the output bias; blue dots: the test set"
    return [Group("sum", note, [(_save(folder, "sum.png", image), "")]), group]


def _features(folder: Path, features: FeatureMaps, class_names: list[str]) -> list[Group]:
    label = class_names[features.label] if features.label < len(class_names) else str(features.label)
    best = int(features.scores.argmax())
    guess = class_names[best] if best < len(class_names) else str(best)
    about = f"test sample {features.sample}, a {label}; the network says {guess} ({float(features.scores[best]):.1%})"
    groups = [Group("input", about, [(_save(folder, "input.png", _upscale(_grey(features.image))), "")])]
    for stage in features.stages:
        scale = float(stage.maps.abs().max())
        channels, height, width = stage.maps.shape
        note = f"{channels} maps of {height}x{width}, after the activation function; white 0, red up to {scale:.3g}"
        group = Group(f"{stage.name} ({stage.layer})", note)
        for c, values in enumerate(stage.maps):
            name = _save(folder, f"{stage.name}-ch{c:02d}.png", _upscale(_diverging(values, scale)))
            group.pictures.append((name, f"channel {c}"))
        groups.append(group)
    if features.templates:
        scale = max(float(t.weights.abs().max()) for t in features.templates)
        note = f"their incoming weights as images: red positive, blue negative (up to {scale:.3g})"
        group = Group("most active units of the first hidden layer", note)
        for rank, template in enumerate(features.templates):
            name = f"template{rank}-unit{template.unit:03d}.png"
            _save(folder, name, _upscale(_diverging(template.weights, scale)))
            group.pictures.append((name, f"unit {template.unit}: activation {template.activation:.3g}"))
        groups.append(group)
    return groups


def _index(title: str, about: str, groups: list[Group]) -> str:
    parts = [
        "<!doctype html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:1.5em}"
        ".grid{display:grid;grid-template-columns:repeat(auto-fill,minmax(200px,1fr));gap:12px}"
        "figure{margin:0}img{image-rendering:pixelated;max-width:100%}figcaption{font-size:12px}</style>",
        f"</head><body><h1>{html.escape(title)}</h1><p>{html.escape(about)}</p>",
    ]
    for group in groups:
        parts.append(f'<h2>{html.escape(group.title)}</h2><p>{html.escape(group.note)}</p><div class="grid">')
        for name, caption in group.pictures:
            alt = html.escape(caption or group.title, quote=True)
            parts.append(
                f'<figure><img src="{html.escape(name, quote=True)}" alt="{alt}">'
                f"<figcaption>{html.escape(caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"
