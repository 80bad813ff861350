"""Logging: module loggers (``logging.getLogger(__name__)``) under the ``syngen`` logger, shown through rich.

The CLI calls :func:`setup` once with the verbosity of ``-v/--verbose`` and ``--quiet``. Library noise that a
user cannot act on (transformers' notes that torchvision is missing) is filtered out as soon as syngen is
imported, by :func:`quiet_libraries`.
"""

from __future__ import annotations

import logging

from rich.console import Console
from rich.logging import RichHandler

_NOT_ACTIONABLE = ("requires torchvision (not installed)",)


def setup(verbosity: int = 0) -> None:
    """Show syngen's log records on stderr: warnings only for ``verbosity < 0`` (``--quiet``), info by default,
    debug from 1 (``-v``)."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    logger = logging.getLogger("syngen")
    for handler in list(logger.handlers):
        if isinstance(handler, RichHandler):
            logger.removeHandler(handler)
    handler = RichHandler(console=Console(stderr=True), show_path=False, show_time=verbosity > 0, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def _actionable(record: logging.LogRecord) -> bool:
    message = record.getMessage()
    return not any(text in message for text in _NOT_ACTIONABLE)


def quiet_libraries() -> None:
    """Drop the libraries' log records a user cannot act on (idempotent)."""
    logger = logging.getLogger("transformers.utils.import_utils")
    if _actionable not in logger.filters:
        logger.addFilter(_actionable)
