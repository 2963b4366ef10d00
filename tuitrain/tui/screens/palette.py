"""Provides the command palette and its provider: it offers whatever commands the active screen lists."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from textual import work
from textual.await_complete import AwaitComplete
from textual.command import CommandList, CommandPalette, DiscoveryHit, Hit, Hits, Provider
from textual.css.query import NoMatches


@dataclass(frozen=True)
class PaletteCommand:
    name: str
    help: str
    run: Callable[[], object]


class HasCommands(Protocol):
    def palette_commands(self, query: str) -> list[PaletteCommand]:
        """The screen's commands; `query` lets it offer typed values (e.g. "lr 0.05")."""
        ...


class ScreenCommands(Provider):
    """Commands of the screen the palette was opened on (see HasCommands)."""

    def _commands(self, query: str) -> list[PaletteCommand]:
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


class Palette(CommandPalette):
    """Textual's command palette without two crashes (Textual 8.2) that fast keys in a busy app reach:

    - Textual opens its palette with a fixed id; when a palette closes from its own handler (it ran a
      command), a ctrl+p already queued is handled before the old one is removed, and a second palette
      with the same id raised DuplicateIds. This one has no id (App.action_command_palette opens it).
    - PageUp/PageDown right after the first results arrive, before the list has been laid out, raised
      KeyError in OptionList._move_page. They wait until the list has a size (there is nothing to page).
    - A selection (Enter) still on its way when escape closed the palette dismissed it a second time,
      and Screen.dismiss pops whatever is on top: the dashboard went, the app showed a blank screen and
      the selected command then crashed on the removed dashboard. A palette is dismissed once.
    - Its search worker, still starting when the palette closed, looked for the removed command list
      (NoMatches, a failed worker: the app stopped). A search for a closed palette ends quietly.
    """

    @work(exclusive=True, group=CommandPalette._GATHER_COMMANDS_GROUP)
    async def _gather_commands(self, search_value: str) -> None:
        try:
            await CommandPalette._gather_commands.__wrapped__(self, search_value)  # type: ignore[attr-defined]
        except NoMatches:
            if self.is_attached and self.is_active:
                raise

    def dismiss(self, result: object = None) -> AwaitComplete:
        if not self.is_active:  # already closed
            return AwaitComplete.nothing()  # type: ignore[no-untyped-call, no-any-return]
        return super().dismiss(result)  # type: ignore[arg-type]

    def _action_command_list(self, action: str) -> None:
        if action in ("page_up", "page_down") and not self.query_one(CommandList).scrollable_content_region:
            return
        super()._action_command_list(action)
