"""Errors raised at the edges (files, configs, command line).

Every message names the offending file (or key) and says what was expected and
what was found, so a user can fix the input without reading the code.
"""

from __future__ import annotations

from pathlib import Path


class MedregError(Exception):
    """Base class for errors medreg reports to users (the CLI prints them and exits 2)."""


class InputError(MedregError, ValueError):
    """A file, folder or value given by the user is unusable."""

    def __init__(self, path: str | Path | None, problem: str):
        self.path = None if path is None else Path(path)
        self.problem = problem
        where = f"{self.path}: " if self.path is not None else ""
        super().__init__(f"{where}{problem}")

    def __reduce__(self):  # picklable, so an error raised in a worker process reaches the caller intact
        return (type(self), (self.path, self.problem))


class ConfigError(MedregError, ValueError):
    """A configuration file or override is invalid."""
