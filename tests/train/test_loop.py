"""The shared loop on the sft objective: loss goes down, checkpoints, metrics.jsonl, resume equals no interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from syngen.train.checkpoint import checkpoints, read_state
from syngen.train.config import SftConfig
from syngen.train.loop import ConfigError, TrainError, resume_point, train
from syngen.train.policy import TextPromptableSam
from syngen.train.sft import SftObjective
from tests.train.shapes import make_shapes_dataset

TINY = {
    "sam_model_name_or_path": "tiny:segmenter",
    "text_encoder_name_or_path": "tiny:text-encoder",
    "prompter_heads": 2,
}


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), images=4)


def sft(data: Path, out: Path, **options) -> SftConfig:
    values = {
        "dataset_name": str(data), "output_dir": str(out), "per_device_train_batch_size": 4, "learning_rate": 1e-2,
        "logging_steps": 1, **TINY, **options,
    }  # fmt: skip
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
    state = read_state(out)
    assert {k: state[k] for k in ("step", "epoch", "objective", "max_steps")} == {
        "step": 16, "epoch": 8.0, "objective": "sft", "max_steps": 16,
    }  # fmt: skip
    assert state["log_history"] == logged  # as transformers' Trainer keeps it
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
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
    options = {
        "max_steps": 5, "save_steps": 2, "per_device_train_batch_size": 3, "lr_scheduler_type": "linear",
        "save_total_limit": 1,
    }  # fmt: skip
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
    resumed = train(SftObjective(sft(shapes, tmp_path / "cut", resume_from_checkpoint="true", **options)))

    a, b = load_file(whole / "model.safetensors"), load_file(resumed / "model.safetensors")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], msg=key)
    assert [m["step"] for m in metrics(resumed)] == [1, 2, 3, 4, 5]
    assert read_state(resumed)["log_history"] == metrics(resumed)  # the checkpoint's history, then steps 3-5
    assert [m["loss"] for m in metrics(resumed)] == pytest.approx([m["loss"] for m in metrics(whole)], rel=1e-4)
    assert [p.name for p in checkpoints(whole)] == ["checkpoint-4"]  # save_total_limit=1 pruned checkpoint-2


@pytest.mark.parametrize(
    "options, steps_per_epoch",
    [
        # 4 images, 8 regions, batches of 3: a quarter of the images held out leaves 6 regions (2 batches)
        pytest.param({"eval_fraction": 0.25, "report_to": "none"}, 2, id="eval-fraction-holds-out-an-image"),
        pytest.param({"dataset_test_split": "train", "report_to": "tensorboard"}, 3, id="test-split-tensorboard"),
    ],
)
def test_eval_metrics_are_logged_during_training_and_named_in_the_card(
    shapes: Path, tmp_path: Path, options: dict, steps_per_epoch: int
) -> None:
    out = train(
        SftObjective(
            sft(
                shapes, tmp_path / "sft", max_steps=4, per_device_train_batch_size=3, eval_steps=2, save_steps=2,
                logging_steps=1, **options,
            )
        )
    )  # fmt: skip
    logged = metrics(out)
    evals = [m for m in logged if "eval/mIoU" in m]
    assert [m["step"] for m in evals] == [2, 4]
    assert all(set(m) == {"step", "epoch", "eval/mIoU", "eval/oIoU"} for m in evals)
    assert all(0 <= m["eval/mIoU"] <= 1 and 0 <= m["eval/oIoU"] <= 1 for m in evals)
    assert [m["step"] for m in logged if "loss" in m] == [1, 2, 3, 4]
    assert read_state(out)["epoch"] == 4 / steps_per_epoch
    assert (out / "runs").is_dir() == (options["report_to"] == "tensorboard")
    assert read_state(out)["log_history"] == logged
    assert read_state(out / "checkpoint-2")["log_history"] == [m for m in logged if m["step"] <= 2]
    front = yaml.safe_load((out / "README.md").read_text().split("---")[1])
    assert front["datasets"] == [str(shapes)]
    result = front["model-index"][0]["results"][0]
    assert result["task"]["type"] == "image-segmentation"
    assert result["dataset"]["type"] == str(shapes)
    assert {m["type"]: m["value"] for m in result["metrics"]} == {
        "mIoU": evals[-1]["eval/mIoU"], "oIoU": evals[-1]["eval/oIoU"],
    }  # fmt: skip


def test_an_empty_split_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="no examples for `sft` in split .train."):
        train(SftObjective(sft(make_empty(tmp_path), tmp_path / "out")))


def make_empty(tmp_path: Path) -> Path:
    from syngen.export import CardInfo, export_dataset
    from tests.train.shapes import make_sample

    sample = make_sample(0, ()) | {"regions": []}
    export_dataset(iter([sample]), tmp_path / "empty", CardInfo(name="empty"))
    return tmp_path / "empty"


def test_resume_from_checkpoint_names_the_latest_or_a_folder(tmp_path: Path) -> None:
    assert resume_point(None, tmp_path) is None
    assert resume_point("true", tmp_path) is None  # nothing saved yet: the run starts from step 0
    for step in (2, 10):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "trainer_state.json").write_text(f'{{"step": {step}}}')
    assert resume_point("True", tmp_path) == tmp_path / "checkpoint-10"
    assert resume_point(str(tmp_path / "checkpoint-2"), tmp_path) == tmp_path / "checkpoint-2"
    with pytest.raises(ConfigError, match=r"resume_from_checkpoint: .*/nowhere is not a checkpoint"):
        resume_point(str(tmp_path / "nowhere"), tmp_path)
