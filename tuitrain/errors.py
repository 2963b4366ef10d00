"""Provides the error types that the CLI turns into one-line messages and exit codes."""


class TuitrainError(Exception):
    """A failure the user can act on; `exit_code` is what the CLI exits with."""

    exit_code = 1


class UsageError(TuitrainError):
    """Bad input: a preset, an option, a path or a data set the user named."""

    exit_code = 2


class ConfigError(UsageError):
    """A preset file that does not parse or does not validate."""


class DataUnavailable(UsageError):
    """A data set that is neither on disk nor downloadable right now."""
