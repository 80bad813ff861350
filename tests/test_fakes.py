"""The fakes the stage tests use satisfy the role Protocols the real backends do, and only those."""

from __future__ import annotations

import pytest

from syngen.devtools.fakes import (
    FakeCaptioner,
    FakeGrounder,
    FakeLLM,
    FakeSegmenter,
    FakeTextToImage,
    FloodFillSegmenter,
)
from syngen.models.roles import PROTOCOLS, Captioner, ChatLLM


@pytest.mark.parametrize(
    ("fake", "role"),
    [
        pytest.param(FakeCaptioner([]), "captioner", id="captioner"),
        pytest.param(FakeTextToImage(), "text-to-image", id="text-to-image"),
        pytest.param(FakeLLM([]), "llm", id="llm"),
        pytest.param(FakeGrounder(), "grounder", id="grounder"),
        pytest.param(FakeSegmenter(), "segmenter", id="segmenter"),
        pytest.param(FloodFillSegmenter(), "segmenter", id="flood-fill-segmenter"),
    ],
)
def test_fake_satisfies_its_role_only(fake: object, role: str) -> None:
    assert [name for name, protocol in PROTOCOLS.items() if isinstance(fake, protocol)] == [role]


def test_an_object_without_the_batch_call_does_not() -> None:
    assert not isinstance(FakeLLM([]), Captioner)
    assert not isinstance(object(), ChatLLM)
