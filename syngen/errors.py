"""syngen's error family: every error a user can cause or fix derives from :class:`SyngenError`.

The CLI catches :class:`SyngenError` once and exits with its ``exit_code``: 2 for a bad recipe or bad arguments
(fix the input and run again), 1 for a run that failed. Messages are safe to print (no tokens) and say what to do.
"""

from __future__ import annotations


class SyngenError(Exception):
    """Base of syngen's errors; ``exit_code`` is what the CLI exits with."""

    exit_code: int = 1


class RecipeError(SyngenError, ValueError):
    """A recipe that cannot run; the message names the file, the field and what was expected."""

    exit_code = 2


class UsageError(SyngenError):
    """Bad command-line arguments (e.g. an output folder that holds no run)."""

    exit_code = 2


class PreflightError(SyngenError, RuntimeError):
    """A model of the recipe cannot be resolved (before any compute)."""


class RunLocked(SyngenError, RuntimeError):
    """Another run holds the output folder's lock."""


class StaleStore(SyngenError, RuntimeError):
    """A stage folder made under another fingerprint, where dropping it was not allowed."""


class PushError(SyngenError, RuntimeError):
    """A push that could not be done; the message is safe to print."""
