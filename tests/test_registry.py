"""The lazy ``"module:name"`` import behind every registry."""

from __future__ import annotations

import pytest

from syngen.models import BACKENDS
from syngen.models.twins import TINY
from syngen.registry import load_target
from syngen.stages import STAGES
from syngen.train.cli import OBJECTIVES


def test_load_target_names_the_attribute() -> None:
    import os.path

    assert load_target("os.path:join") is os.path.join


@pytest.mark.parametrize(
    "target",
    [
        *STAGES.values(),
        *(backend.target for backend in BACKENDS.values()),
        *(twin.builder for twin in TINY.values()),
        *(target for _, target in OBJECTIVES.values()),
    ],
)
def test_every_registry_line_loads(target: str) -> None:
    module, _, name = target.partition(":")
    loaded = load_target(target)
    assert loaded.__module__ == module and loaded.__name__ == name
