"""Every trainer test runs tiny models on one torch thread (see ``one_thread`` in tests/conftest.py)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    pass


@pytest.fixture
def warned() -> Iterator[list[str]]:
    """The messages syngen's loggers warn while the test runs (they may not propagate to caplog's root)."""
    records: list[str] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = lambda record: records.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("syngen")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
