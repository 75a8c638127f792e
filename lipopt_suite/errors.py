"""Exceptions that carry a one-line message for the user.

`InputError` means the user's input is at fault (a file, a network, an option): the CLI turns
it into exit code 2 and a single line on stderr. Anything else is a bug or a fault of the
environment (exit code 1).
"""

from __future__ import annotations


class InputError(ValueError):
    """Bad input: a file that cannot be read, an invalid network, an unsupported option."""


class UnsupportedError(InputError):
    """A method was asked for something it does not handle (a norm, a layer, an activation)."""


class SolverUnavailableError(InputError):
    """A solver was forced that is not installed or not usable here."""
