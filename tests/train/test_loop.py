"""The shared loop on the sft objective: loss goes down, checkpoints, metrics.jsonl, resume equals no interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from syngen.train.checkpoint import checkpoints, read_state
from syngen.train.config import SftConfig
from syngen.train.loop import TrainError, train
from syngen.train.policy import TextPromptableSam
from syngen.train.sft import SftObjective
from tests.train.shapes import make_shapes_dataset

TINY = {"sam": "tiny:segmenter", "text_encoder": "tiny:text-encoder", "prompter_heads": 2}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), images=4)


def sft(data: Path, out: Path, **options) -> SftConfig:
    values = {"data": str(data), "out": str(out), "batch_size": 4, "lr": 1e-2, "log_steps": 1, **TINY, **options}
    return SftConfig(**values)


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_sft_lowers_its_loss_and_writes_a_loadable_model(shapes: Path, tmp_path: Path) -> None:
    out = train(SftObjective(sft(shapes, tmp_path / "sft", max_steps=16, save_steps=0)))
    logged = metrics(out)
    assert [m["step"] for m in logged] == list(range(1, 17))
    assert {"loss", "loss/focal", "loss/dice", "loss/coarse", "learning_rate", "samples_per_second"} <= set(logged[0])
    first, last = logged[0]["loss"], sum(m["loss"] for m in logged[-3:]) / 3
    assert last < 0.85 * first, (first, last)
    assert read_state(out) == {"step": 16, "epoch": 8.0, "objective": "sft"}
    assert json.loads((out / "training_config.json").read_text())["max_steps"] == 16
    card = (out / "README.md").read_text()
    assert "syngen train sft" in card and str(shapes) in card and "tiny:segmenter" in card
    policy = TextPromptableSam.load(str(out))
    trained = load_file(out / "model.safetensors")
    assert torch.equal(policy.state_dict()["mask_features.weight"], trained["mask_features.weight"])


class Interrupt(Exception):
    pass


def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_weights(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"max_steps": 5, "save_steps": 2, "batch_size": 3, "scheduler": "linear", "save_total_limit": 1}
    whole = train(SftObjective(sft(shapes, tmp_path / "whole", **options)))

    calls = {"n": 0}
    loss = SftObjective.loss

    def dies_at_step_4(self, model, batch):
        calls["n"] += 1
        if calls["n"] == 4:
            raise Interrupt
        return loss(self, model, batch)

    monkeypatch.setattr(SftObjective, "loss", dies_at_step_4)
    with pytest.raises(Interrupt):
        train(SftObjective(sft(shapes, tmp_path / "cut", **options)))
    assert [p.name for p in checkpoints(tmp_path / "cut")] == ["checkpoint-2"]
    monkeypatch.setattr(SftObjective, "loss", loss)
    resumed = train(SftObjective(sft(shapes, tmp_path / "cut", resume=True, **options)))

    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    assert [m["step"] for m in metrics(resumed)] == [1, 2, 3, 4, 5]
    assert [m["loss"] for m in metrics(resumed)] == pytest.approx([m["loss"] for m in metrics(whole)], rel=1e-4)
    assert [p.name for p in checkpoints(whole)] == ["checkpoint-4"]  # save_total_limit=1 pruned checkpoint-2


def test_an_empty_split_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="no training examples"):
        train(SftObjective(sft(make_empty(tmp_path), tmp_path / "out")))


def make_empty(tmp_path: Path) -> Path:
    from syngen.export import CardInfo, export_dataset
    from tests.train.shapes import make_sample

    sample = make_sample(0, ()) | {"regions": []}
    export_dataset(iter([sample]), tmp_path / "empty", CardInfo(name="empty"))
    return tmp_path / "empty"
