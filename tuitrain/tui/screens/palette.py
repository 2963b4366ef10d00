"""Provides the command palette's provider: it offers whatever commands the active screen lists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from textual.command import DiscoveryHit, Hit, Hits, Provider


@dataclass(frozen=True)
class Command:
    name: str
    help: str
    run: Callable[[], object]


class HasCommands(Protocol):
    def palette_commands(self, query: str) -> list[Command]:
        """The screen's commands; `query` lets it offer typed values (e.g. "lr 0.05")."""
        ...


class ScreenCommands(Provider):
    """Commands of the screen the palette was opened on (see HasCommands)."""

    def _commands(self, query: str) -> list[Command]:
        screen = self.screen
        lister = getattr(screen, "palette_commands", None)
        return lister(query) if callable(lister) else []

    async def discover(self) -> Hits:
        for command in self._commands(""):
            yield DiscoveryHit(command.name, command.run, help=command.help)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for command in self._commands(query):
            score = matcher.match(command.name)
            if command.name.startswith("Set learning rate to") and query.strip():
                score = max(score, 1.0)  # typed values always match what was typed
            if score > 0:
                yield Hit(score, matcher.highlight(command.name), command.run, help=command.help)
