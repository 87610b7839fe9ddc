"""The one exception family kdviz raises for problems a user can fix; the CLI and UI turn it into a message."""

from __future__ import annotations

from collections.abc import Iterable


class KdvizError(Exception):
    """A problem with the user's input, model or data, described in one readable sentence."""


class UnknownNameError(KdvizError, ValueError):
    """A name (method, model, format, ...) that is not one of the known choices."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.choices)}")


class ModelLoadError(KdvizError):
    """A model spec that could not be resolved to weights and a tokenizer."""


class InputError(KdvizError, ValueError):
    """An empty, over-long or malformed input."""
