"""Hub failure wording, shared by dataset and model uploads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from huggingface_hub import HfApi

from syngen.errors import PushError
from syngen.hub import push_failure, redact
from syngen.train.checkpoint import push_model

TOKEN = "hf_" + "Zq9" * 12


@pytest.mark.parametrize("noun", ["dataset", "model"], ids=["dataset", "model"])
def test_push_failure_names_the_noun_and_keeps_the_detail(noun: str) -> None:
    text = push_failure(OSError(f"dataset shard lost for {TOKEN}"), "me/x", noun, TOKEN)
    assert text.startswith(f"Could not push to the {noun} repo 'me/x': ")
    assert text.endswith(f"The local {noun} was not changed.")
    assert "OSError: dataset shard lost for ***" in text  # the error's own words are not reworded


def test_redact_masks_token_shapes() -> None:
    assert redact(f"token {TOKEN} and hf_short") == "token hf_*** and hf_short"


def test_push_model_failure_speaks_of_the_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def create_repo(self: HfApi, repo_id: str, **kwargs: Any) -> str:
        raise ConnectionError("connection reset")

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    with pytest.raises(PushError, match="Could not push to the model repo 'me/policy'") as raised:
        push_model(tmp_path, "me/policy")
    assert "local model was not changed" in str(raised.value) and "dataset" not in str(raised.value)
