"""Provides pictures made of text: greyscale images, signed heatmaps and class colours per colour depth.

Every picture is drawn for one colour depth, so its meaning survives the terminal it lands on:
"truecolor" (any RGB), "256" (colours picked from the xterm 6x6x6 cube and grey ramp on purpose,
not left to the terminal's nearest match), "standard" (the 16 ANSI colours) and "none" (NO_COLOR or
a terminal without colour: shade characters, signs and digits instead).

Colours are always given as RGB, one that Rich reduces to exactly the palette entry chosen:
Textual repaints colour *numbers* with its own ANSI theme before the terminal's colour system
reduces them again (Monokai's "blue" comes out as cyan on a 16-colour terminal), while such an
RGB reaches the terminal as that entry (tests/test_charts.py checks every one used).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any, Literal

from rich.style import Style
from rich.text import Text

Depth = Literal["truecolor", "256", "standard", "none"]
DEPTHS: tuple[Depth, ...] = ("truecolor", "256", "standard", "none")
RGB = tuple[int, int, int]

CLASS_COLOURS: list[RGB] = [
    (78, 121, 167),
    (242, 142, 43),
    (89, 161, 79),
    (225, 87, 89),
    (176, 122, 161),
    (118, 183, 178),
    (237, 201, 72),
    (255, 157, 167),
    (156, 117, 95),
    (186, 176, 172),
]
# the same hues in the 256-colour palette: (dark, mid, bright) per class; regions use dark/mid, points bright
CLASS_256: list[tuple[int, int, int]] = [
    (18, 25, 39),
    (94, 166, 214),
    (22, 28, 82),
    (88, 160, 203),
    (54, 97, 177),
    (23, 30, 51),
    (58, 142, 227),
    (125, 168, 218),
    (95, 137, 180),
    (240, 245, 252),
]
# the 16 ANSI colours as Rich reduces RGB to them (the VGA palette): the RGB sent for each name
STANDARD_RGB: dict[str, RGB] = {
    "black": (0, 0, 0),
    "red": (170, 0, 0),
    "green": (0, 170, 0),
    "yellow": (170, 85, 0),
    "blue": (0, 0, 170),
    "magenta": (170, 0, 170),
    "cyan": (0, 170, 170),
    "white": (170, 170, 170),
    "bright_black": (85, 85, 85),
    "bright_red": (255, 85, 85),
    "bright_green": (85, 255, 85),
    "bright_yellow": (255, 255, 85),
    "bright_blue": (85, 85, 255),
    "bright_magenta": (255, 85, 255),
    "bright_cyan": (85, 255, 255),
    "bright_white": (255, 255, 255),
}
# 16 colours: (region, point) per class; seven hues, so classes past the seventh repeat
CLASS_16: list[tuple[str, str]] = [
    ("blue", "bright_blue"),
    ("yellow", "bright_yellow"),
    ("green", "bright_green"),
    ("red", "bright_red"),
    ("magenta", "bright_magenta"),
    ("cyan", "bright_cyan"),
    ("white", "bright_white"),
]
CLASS_CHARS = "·░▒▓█=+*#%"  # NO_COLOR: decision regions, one character per class
BACKGROUND: RGB = (24, 24, 28)
SHADES = " ░▒▓█"
SIGNED_CHARS = ("≡", "=", "-", "·", "+", "*", "#")  # NO_COLOR heatmap: strongly negative ... strongly positive

# blue - white - red for signed values (negative blue, positive red)
_BLUE: RGB = (33, 92, 196)
_WHITE: RGB = (242, 242, 242)
_RED: RGB = (200, 30, 40)


def colour_depth(app: Any) -> Depth:
    """The depth to draw for: NO_COLOR (Textual's `app.no_color`) wins, then the console's colour system."""
    if getattr(app, "no_color", False):
        return "none"
    depths: dict[str, Depth] = {"truecolor": "truecolor", "256": "256", "standard": "standard", "windows": "standard"}
    return depths.get(app.console.color_system or "", "none")


def rgb(colour: RGB) -> str:
    return f"rgb({colour[0]},{colour[1]},{colour[2]})"


def xterm256(number: int) -> str:
    """Colour number 16-255 of the xterm palette as an RGB that comes back as that number: the cube's
    own RGB; for the grey ramp 232-255, the grey Rich maps there (its 25-step reading of the ramp)."""
    if number >= 232:
        level = round((number - 231) * 255 / 25)
        return rgb((level, level, level))
    levels = (0, 95, 135, 175, 215, 255)
    index = number - 16
    return rgb((levels[index // 36], levels[index // 6 % 6], levels[index % 6]))


def ansi16(name: str) -> str:
    return rgb(STANDARD_RGB[name])


def mix(a: RGB, b: RGB, amount: float) -> RGB:
    t = max(0.0, min(1.0, amount))
    return (round(a[0] + (b[0] - a[0]) * t), round(a[1] + (b[1] - a[1]) * t), round(a[2] + (b[2] - a[2]) * t))


def blend(colour: RGB, amount: float, base: RGB = BACKGROUND) -> RGB:
    return mix(base, colour, amount)


def clamp01(value: float) -> float:
    return 0.0 if math.isnan(value) else max(0.0, min(1.0, value))


# ---------------------------------------------------------------- colours per depth
def grey_colour(value: float, depth: Depth) -> str:
    """0 = black ... 1 = white."""
    v = clamp01(value)
    if depth == "256":  # 16 (black), the 24-step grey ramp 232-255, 231 (white)
        level = round(v * 25)
        return xterm256(16 if level == 0 else 231 if level == 25 else 231 + level)
    if depth == "standard":
        return ansi16(("black", "bright_black", "white", "bright_white")[min(3, int(v * 4))])
    g = round(v * 255)
    return rgb((g, g, g))


def diverging_colour(value: float, depth: Depth) -> str:
    """-1 blue ... 0 white ... +1 red; non-finite values get a colour outside the scale."""
    if not math.isfinite(value):
        return {"256": xterm256(46), "standard": ansi16("bright_green")}.get(depth, rgb((0, 200, 0)))
    v = max(-1.0, min(1.0, value))
    if depth == "256":  # walk the cube's edge from white (5,5,5) to blue (0,0,5) or red (5,0,0)
        k = 5 - round(abs(v) * 5)
        r, g, b = (5, k, k) if v > 0 else (k, k, 5)
        return xterm256(16 + 36 * r + 6 * g + b)
    if depth == "standard":
        a = abs(v)
        if a < 0.2:
            return ansi16("bright_white")
        return ansi16(("bright_red" if a < 0.6 else "red") if v > 0 else ("bright_blue" if a < 0.6 else "blue"))
    return rgb(mix(_WHITE, _RED if v > 0 else _BLUE, abs(v)))


def signed_char(value: float) -> str:
    """NO_COLOR stand-in for diverging_colour: ≡ = - · + * # from -1 to +1, ? for NaN/inf."""
    if not math.isfinite(value):
        return "?"
    v = max(-1.0, min(1.0, value))
    return SIGNED_CHARS[3 + round(v * 3)]


def class_region(k: int, confidence: float, depth: Depth) -> str:
    """Background of a decision region: the class's hue, brighter where the network is surer."""
    if depth == "256":
        dark, mid, _ = CLASS_256[k % len(CLASS_256)]
        return xterm256(mid if confidence >= 0.8 else dark)
    if depth == "standard":
        return ansi16(CLASS_16[k % len(CLASS_16)][0])
    return rgb(blend(CLASS_COLOURS[k % len(CLASS_COLOURS)], 0.2 + 0.5 * clamp01(confidence)))


def class_point(k: int, depth: Depth) -> str:
    """A sample of class k: a brighter shade than any region of that class."""
    if depth == "256":
        return xterm256(CLASS_256[k % len(CLASS_256)][2])
    if depth == "standard":
        return ansi16(CLASS_16[k % len(CLASS_16)][1])
    return rgb(tuple(min(255, v + 60) for v in CLASS_COLOURS[k % len(CLASS_COLOURS)]))  # type: ignore[arg-type]


def named(name: str, depth: Depth) -> str:
    """A standard colour name for text styles; on 16 colours as the RGB that stays that colour."""
    return ansi16(name) if depth == "standard" and name in STANDARD_RGB else name


def mistake_style(depth: Depth) -> Style:
    """A misclassified sample: white on red in every colour depth."""
    if depth == "256":
        return Style(color=xterm256(231), bgcolor=xterm256(160), bold=True)
    if depth == "standard":
        return Style(color=ansi16("bright_white"), bgcolor=ansi16("red"), bold=True)
    return Style(color=rgb((255, 255, 255)), bgcolor=rgb((200, 30, 40)), bold=True)


def class_char(k: int) -> str:
    return CLASS_CHARS[k % len(CLASS_CHARS)]


def heatmap_legend(depth: Depth, non_finite: int = 0) -> list[Phrase]:
    """What the heatmap's colours (or characters) mean, as phrases for fit_phrases."""
    if depth == "none":
        parts = ["heatmap:", "≡ = - below 0,", "· about 0,", "+ * # above 0"]
    else:
        parts = ["heatmap:", "blue < 0 < red,", "white about 0"]
    if non_finite:
        parts[-1] += ","
        parts.append(f"{non_finite:,} NaN/inf " + ("(?)" if depth == "none" else "(green)"))
    return [(part, "dim") for part in parts]


# ---------------------------------------------------------------- pictures
def pixels(rows: list[list[str]]) -> Text:
    """Two pixel rows per text line with '▀' (upper = foreground, lower = background colour)."""
    text = Text(no_wrap=True, overflow="crop")
    for top_index in range(0, len(rows), 2):
        top = rows[top_index]
        bottom = rows[top_index + 1] if top_index + 1 < len(rows) else None
        for col, upper in enumerate(top):
            lower = bottom[col] if bottom is not None and col < len(bottom) else None
            text.append("▀", Style(color=upper, bgcolor=lower))
        if top_index + 2 < len(rows):
            text.append("\n")
    return text


def characters(rows: list[list[float]], pick: Any) -> Text:
    """NO_COLOR: two value rows per text line, averaged, drawn as the character pick(value)."""
    text = Text(no_wrap=True, overflow="crop")
    for top_index in range(0, len(rows), 2):
        top = rows[top_index]
        bottom = rows[top_index + 1] if top_index + 1 < len(rows) else top
        text.append("".join(pick((a + b) / 2) for a, b in zip(top, bottom, strict=False)))
        if top_index + 2 < len(rows):
            text.append("\n")
    return text


def shade_char(value: float) -> str:
    return SHADES[min(len(SHADES) - 1, int(clamp01(value) * len(SHADES)))]


def grey_picture(values: list[list[float]], depth: Depth) -> Text:
    """Values in [0, 1] (0 black, 1 white)."""
    if depth == "none":
        return characters(values, shade_char)
    return pixels([[grey_colour(v, depth) for v in row] for row in values])


def peak_of(values: list[list[float]]) -> float:
    """The largest finite magnitude (1.0 when there is none)."""
    return max((abs(v) for row in values for v in row if math.isfinite(v)), default=0.0) or 1.0


def heatmap(values: list[list[float]], scale: float | None = None, depth: Depth = "truecolor") -> Text:
    """A signed matrix, blue < 0 < red, scaled by `scale` (default: its largest finite magnitude)."""
    peak = scale if scale is not None and math.isfinite(scale) and scale > 0 else peak_of(values)
    scaled = [[v / peak for v in row] for row in values]
    if depth == "none":
        return characters(scaled, signed_char)
    return pixels([[diverging_colour(v, depth) for v in row] for row in scaled])


def bar(fraction: float, width: int) -> str:
    """A horizontal bar of `width` cells filled to `fraction` with eighth blocks."""
    eighths = round(clamp01(fraction) * width * 8)
    full, part = divmod(eighths, 8)
    return ("█" * full + (" ▏▎▍▌▋▊▉"[part] if part else "")).ljust(width)


# ---------------------------------------------------------------- text that wraps between phrases only
Phrase = Text | str | tuple[str, Any]  # a Text, a plain string, or a string and its style ("" for none)


def phrase_text(phrase: Phrase) -> Text:
    if isinstance(phrase, Text):
        return phrase
    if isinstance(phrase, str):
        return Text(phrase)
    text, style = phrase
    return Text(text, style or "")


def fit_phrases(phrases: Sequence[Phrase], width: int, max_lines: int | None = None, gap: str = "  ") -> Text:
    """Phrases joined by `gap`, a new line only between phrases; a phrase wider than a line is cut with '…'.

    With `max_lines`, phrases that do not fit are left out (put the ones that matter most first)."""
    width = max(1, width)
    lines: list[list[Text]] = [[]]
    used = 0
    for phrase in phrases:
        piece = phrase_text(phrase)
        size = piece.cell_len
        if not size:
            continue
        if lines[-1] and used + len(gap) + size <= width:
            lines[-1].append(piece)
            used += len(gap) + size
            continue
        if lines[-1]:
            if max_lines is not None and len(lines) >= max_lines:
                continue  # no room: leave it out; a shorter phrase further on may still fit
            lines.append([])
        lines[-1].append(piece)
        used = size
    out = Text(no_wrap=True, overflow="ellipsis", end="")
    for index, line in enumerate(lines):
        if index:
            out.append("\n")
        joined = Text(gap).join(line)
        if joined.cell_len > width:
            joined.truncate(width, overflow="ellipsis")
        out.append_text(joined)
    return out
