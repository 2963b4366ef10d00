"""Provides the error types that the CLI turns into one-line messages and exit codes."""


def escape(text: object) -> str:
    """`text` with every control or other non-printable character written as an escape (\\n, \\x1b).

    Safe to print on a terminal: no newline, no escape sequence, nothing invisible reaches it raw.
    """
    text = str(text)
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def quote(text: object) -> str:
    """A user-given name or path for a message: quoted, its control characters escaped ('a\\nb')."""
    return repr(str(text))


class TuitrainError(Exception):
    """A failure the user can act on; `exit_code` is what the CLI exits with.

    Its text is always one printable line: control characters from user input are escaped.
    """

    exit_code = 1

    def __str__(self) -> str:
        return escape(super().__str__())


class UsageError(TuitrainError):
    """Bad input: a preset, an option, a path or a data set the user named."""

    exit_code = 2


class ConfigError(UsageError):
    """A preset file that does not parse or does not validate."""


class DataUnavailable(UsageError):
    """A data set that is neither on disk nor downloadable right now."""
