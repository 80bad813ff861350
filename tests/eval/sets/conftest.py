"""A tiny policy checkpoint, and predictions replaced by chosen masks so metrics can be computed by hand."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from syngen.train.policy import TextPromptableSam


@pytest.fixture(autouse=True)
def _one_thread(one_thread: None) -> None:
    pass


@pytest.fixture(scope="session")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("policy")
    TextPromptableSam.from_parts("tiny:segmenter", "tiny:text-encoder", prompter_heads=2).save_pretrained(folder)
    return folder


@pytest.fixture
def predict(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, np.ndarray]], list[str]]:
    """``predict({phrase: mask})`` makes the policy answer each phrase with its mask; returns the list the
    phrases sent to the policy are appended to."""

    def install(masks: dict[str, np.ndarray]) -> list[str]:
        seen: list[str] = []
        tokenize = TextPromptableSam.tokenize

        def spy(self: TextPromptableSam, phrases: list[str]) -> dict:
            seen.extend(phrases)
            spy.last = phrases  # type: ignore[attr-defined]
            return tokenize(self, phrases)

        def answer(self, logits, sizes):  # noqa: ANN001, ANN202
            return [masks[phrase] for phrase in spy.last]  # type: ignore[attr-defined]

        monkeypatch.setattr(TextPromptableSam, "tokenize", spy)
        monkeypatch.setattr(TextPromptableSam, "image_masks", answer)
        return seen

    return install
