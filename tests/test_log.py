"""Logging: verbosity options, and library noise a user cannot act on kept off the terminal."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syngen.cli import app

QUICKSTART = Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml"


@pytest.mark.parametrize(
    ("options", "level"),
    [
        pytest.param([], logging.INFO, id="default"),
        pytest.param(["-v"], logging.DEBUG, id="verbose"),
        pytest.param(["--verbose"], logging.DEBUG, id="verbose-long"),
        pytest.param(["--quiet"], logging.WARNING, id="quiet"),
    ],
)
def test_global_options_set_the_log_level(options: list[str], level: int) -> None:
    result = CliRunner().invoke(app, [*options, "validate", str(QUICKSTART)])
    assert result.exit_code == 0, result.output
    assert logging.getLogger("syngen").level == level


def test_missing_torchvision_notes_are_dropped() -> None:
    import syngen  # noqa: F401  (installs the filter)

    noisy = logging.getLogger("transformers.utils.import_utils")
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign]
    old_level = noisy.level
    noisy.addHandler(handler)
    noisy.setLevel(logging.WARNING)  # transformers' own level may hide warnings (TRANSFORMERS_VERBOSITY)
    try:
        noisy.warning("`BlipImageProcessor` requires torchvision (not installed); falling back to the PIL one")
        noisy.warning("something else worth reading")
    finally:
        noisy.removeHandler(handler)
        noisy.setLevel(old_level)
    assert [r.getMessage() for r in seen] == ["something else worth reading"]
