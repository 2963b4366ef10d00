"""Provides TextLines: a large styled Text drawn line by line, only the lines on screen (Textual's line API)."""

from __future__ import annotations

import itertools
from typing import Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget


def text_strips(text: Text) -> list[Strip]:
    """The Text's lines as strips, its spans swept once: a Static would turn the whole Text into
    strips through Textual's Content on every update (a unit grid of 6,000 styled runs: ~0.2 s)."""
    plain = text.plain
    base = Style.parse(text.style) if isinstance(text.style, str) else text.style
    spans = sorted(text.spans, key=lambda s: s.start)
    strips: list[Strip] = []
    start, span_at, active = 0, 0, []
    for line in plain.split("\n"):
        end = start + len(line)
        cuts = {start, end}
        while span_at < len(spans) and spans[span_at].start < end:
            active.append(spans[span_at])
            span_at += 1
        active = [s for s in active if s.end > start]
        for s in active:
            cuts.update((max(s.start, start), min(s.end, end)))
        segments = []
        points = sorted(cuts)
        for left, right in itertools.pairwise(points):
            if left >= right:
                continue
            style = base
            for s in active:
                if s.start <= left and s.end >= right:
                    piece = Style.parse(s.style) if isinstance(s.style, str) else s.style
                    style = piece if style is None else style + piece
            segments.append(Segment(plain[left:right], style))
        strips.append(Strip(segments) if segments else Strip.blank(0))
        start = end + 1
    return strips


class TextLines(Widget):
    """A Text, drawn only where it shows; `update` replaces it (height follows its lines)."""

    DEFAULT_CSS = "TextLines { height: auto; }"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.strips: list[Strip] = []
        self.widest = 0

    def update(self, text: Text | list[Strip]) -> None:
        self.strips = text_strips(text) if isinstance(text, Text) else text
        self.widest = max((s.cell_length for s in self.strips), default=0)
        self.refresh(layout=True)

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return len(self.strips)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return self.widest

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if y >= len(self.strips):
            return Strip.blank(width, self.rich_style)
        return self.strips[y].crop_extend(0, width, None).apply_style(self.rich_style)
