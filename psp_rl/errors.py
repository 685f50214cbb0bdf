"""The errors every part of psp_rl raises: bad input, a run that cannot resume, a run stopped or broken.

They live here, outside the rooms that raise them, so the engine, the config and the CLI catch the
same classes without importing each other.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A user error in a config file or value; the message names the key path."""


class CheckpointError(ValueError):
    """No checkpoint of the run directory could be loaded, or one belongs to another config."""


class RunDirBusy(RuntimeError):
    """Another process holds the run directory's lock."""


class RunInterrupted(RuntimeError):
    """The run was stopped by a signal after writing a checkpoint.

    :param signal_name: ``"SIGINT"`` or ``"SIGTERM"``.
    """

    def __init__(self, message: str, signal_name: str = "SIGINT") -> None:
        super().__init__(message)
        self.signal_name = signal_name


class NumericalError(RuntimeError):
    """Training produced non-finite weights; the last good checkpoint is kept."""
