"""syngen's error family: every error a user can cause or fix derives from :class:`SyngenError`.

The CLI catches :class:`SyngenError` once and exits with its ``exit_code``: 2 for a bad recipe or bad arguments
(fix the input and run again), 1 for a run that failed. Messages are safe to print (no tokens) and say what to do.
"""

from __future__ import annotations

import os


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


class OutputError(SyngenError, OSError):
    """A filesystem error writing (or reading) an output folder: full disk, read-only, a path that is a file."""


class RunFailed(SyngenError, RuntimeError):
    """A run that produced nothing: no seed item, or a stage that failed every sample."""


class UnfinishedRun(SyngenError, RuntimeError):
    """An export of a run whose samples are not all computed, without ``--partial``."""


class ConfigError(UsageError, ValueError):
    """A training option with a bad value (``syngen train``); the message names the option."""


class DatasetError(UsageError, ValueError):
    """A dataset to train on or score that cannot be read: no such folder, config, split or column."""


class TrainError(SyngenError, RuntimeError):
    """Training cannot start (no examples, nothing to train, a model that does not fit the objective)."""

    exit_code = 2


def excerpt(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters: a message never echoes a whole bad value."""
    text = repr(value)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def printable(name: str | bytes | os.PathLike[str], limit: int | None = None) -> str:
    """A file name or path as syngen shows and stores it: valid UTF-8 text whatever the bytes. Bytes that are not
    UTF-8 (surrogate escapes in a ``str``) become ``\\xNN`` and control characters such as a newline their
    escape (``\\n``); other text is unchanged. Over ``limit`` characters, it is cut in the middle, saying its
    length."""
    raw = os.fsencode(name)
    text = raw.decode("utf-8", "backslashreplace")
    text = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    if limit is not None and len(text) > limit:
        text = f"{text[: limit // 2]}...{text[-limit // 4 :]} ({len(text)} characters)"
    return text
