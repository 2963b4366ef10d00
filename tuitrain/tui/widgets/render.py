"""Provides half-block pixel drawing: greyscale images, diverging heatmaps and class colours."""

from __future__ import annotations

import os

from rich.style import Style
from rich.text import Text

RGB = tuple[int, int, int]
CLASS_COLOURS: list[RGB] = [(78, 121, 167), (242, 142, 43), (89, 161, 79), (225, 87, 89), (176, 122, 161),
                            (118, 183, 178), (237, 201, 72), (255, 157, 167), (156, 117, 95), (186, 176, 172)]
BACKGROUND: RGB = (24, 24, 28)
SHADES = " ░▒▓█"


def no_color() -> bool:
    return bool(os.environ.get("NO_COLOR"))


def grey(value: float) -> RGB:
    v = int(max(0.0, min(1.0, value)) * 255)
    return (v, v, v)


def diverging(value: float) -> RGB:
    """-1 -> blue, 0 -> near black, +1 -> red (for weights scaled to [-1, 1])."""
    v = max(-1.0, min(1.0, value))
    if v >= 0:
        return (int(40 + 215 * v), int(40 + 60 * v), int(40 + 20 * v))
    v = -v
    return (int(40 + 20 * v), int(40 + 110 * v), int(40 + 215 * v))


def blend(colour: RGB, amount: float, base: RGB = BACKGROUND) -> RGB:
    a = max(0.0, min(1.0, amount))
    return tuple(int(b + (c - b) * a) for c, b in zip(colour, base))  # type: ignore[return-value]


def brightness(colour: RGB) -> float:
    return (0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]) / 255


def pixels(rows: list[list[RGB]]) -> Text:
    """Two pixel rows per text line with '▀' (upper = foreground, lower = background).

    Under NO_COLOR the two pixels are averaged into a shade character instead."""
    text = Text(no_wrap=True, overflow="crop")
    plain = no_color()
    for top_index in range(0, len(rows), 2):
        top = rows[top_index]
        bottom = rows[top_index + 1] if top_index + 1 < len(rows) else None
        for col, upper in enumerate(top):
            lower = bottom[col] if bottom is not None else None
            if plain:
                level = brightness(upper) if lower is None else (brightness(upper) + brightness(lower)) / 2
                text.append(SHADES[min(len(SHADES) - 1, int(level * len(SHADES)))])
            else:
                style = Style(color=f"rgb{upper}", bgcolor=f"rgb{lower}" if lower else None)
                text.append("▀", style)
        if top_index + 2 < len(rows):
            text.append("\n")
    return text


def resample(values: list[list[float]], height: int, width: int) -> list[list[float]]:
    """Nearest-neighbour resize of a 2-D list to height x width."""
    h, w = len(values), len(values[0]) if values else 0
    if not h or not w:
        return []
    return [[values[min(h - 1, r * h // height)][min(w - 1, c * w // width)] for c in range(width)]
            for r in range(height)]


def heatmap(values: list[list[float]], scale: float | None = None) -> Text:
    """A signed matrix as a blue/red heatmap (scaled by its largest magnitude)."""
    peak = scale or max((abs(v) for row in values for v in row), default=1.0) or 1.0
    return pixels([[diverging(v / peak) for v in row] for row in values])


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of `width` cells filled to `fraction` with eighth blocks."""
    eighths = int(round(max(0.0, min(1.0, fraction)) * width * 8))
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)
