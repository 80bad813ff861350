"""The shared loop on the sft objective: loss goes down, checkpoints, metrics.jsonl, resume equals no interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from syngen.train import checkpoint
from syngen.train.checkpoint import checkpoints, read_state
from syngen.train.config import DpoConfig, SftConfig
from syngen.train.dpo import DpoObjective
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
    assert {"loss", "loss/bce", "loss/dice", "learning_rate", "samples_per_second"} <= set(logged[0])
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


def dies_at_call(monkeypatch: pytest.MonkeyPatch, objective: type, call: int) -> None:
    """Makes ``objective.loss`` raise :class:`Interrupt` at its ``call``-th call (a kill in the middle of a step)."""
    calls = {"n": 0}
    loss = objective.loss

    def dying(self, model, batch):
        calls["n"] += 1
        if calls["n"] == call:
            raise Interrupt
        return loss(self, model, batch)

    monkeypatch.setattr(objective, "loss", dying)


def assert_same_weights(a: Path, b: Path) -> None:
    first, second = load_file(a / "model.safetensors"), load_file(b / "model.safetensors")
    assert first.keys() == second.keys()
    for key in first:
        assert torch.equal(first[key], second[key]), key


@pytest.mark.parametrize(
    "grad_accum, save_steps, killed_at_call, resumed_from, kept",
    [
        # 8 regions in batches of 3: 3 micro-batches per epoch
        pytest.param(1, 2, 4, 2, 4, id="no-accumulation-resumed-mid-epoch-0"),
        # 2 optimizer steps per epoch (2 + 1 micro-batches); step 3 = epoch 1 with 2 micro-batches to skip
        pytest.param(2, 3, 6, 3, 3, id="grad-accum-2-resumed-mid-epoch-1"),
    ],
)
def test_a_run_killed_after_a_checkpoint_resumes_to_the_same_weights(
    shapes: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    grad_accum: int,
    save_steps: int,
    killed_at_call: int,
    resumed_from: int,
    kept: int,
) -> None:
    options = {"max_steps": 5, "save_steps": save_steps, "batch_size": 3, "scheduler": "linear", "save_total_limit": 1}
    options["grad_accum"] = grad_accum
    whole = train(SftObjective(sft(shapes, tmp_path / "whole", **options)))

    with monkeypatch.context() as patch:
        dies_at_call(patch, SftObjective, killed_at_call)
        with pytest.raises(Interrupt):
            train(SftObjective(sft(shapes, tmp_path / "cut", **options)))
    assert [p.name for p in checkpoints(tmp_path / "cut")] == [f"checkpoint-{resumed_from}"]
    resumed = train(SftObjective(sft(shapes, tmp_path / "cut", resume=True, **options)))

    assert_same_weights(whole, resumed)
    assert [m["step"] for m in metrics(resumed)] == [1, 2, 3, 4, 5]
    assert [m["loss"] for m in metrics(resumed)] == pytest.approx([m["loss"] for m in metrics(whole)], rel=1e-6)
    assert [p.name for p in checkpoints(whole)] == [f"checkpoint-{kept}"]  # save_total_limit=1 pruned the others


def test_grad_accum_counts_optimizer_steps_per_epoch_and_steps_the_schedule_once_per_step(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    loss = SftObjective.loss
    monkeypatch.setattr(SftObjective, "loss", lambda *a: (calls.__setitem__("n", calls["n"] + 1), loss(*a))[1])
    options = {"epochs": 2, "batch_size": 3, "grad_accum": 2, "scheduler": "linear", "save_steps": 3, "lr": 1e-3}
    out = train(SftObjective(sft(shapes, tmp_path / "run", **options)))
    # 8 regions in batches of 3 = 3 micro-batches per epoch = ceil(3 / 2) = 2 optimizer steps per epoch
    assert calls["n"] == 6
    assert read_state(out) == {"step": 4, "epoch": 2.0, "objective": "sft"}
    logged = metrics(out)
    assert [(m["step"], m["epoch"]) for m in logged] == [(1, 0.5), (2, 1.0), (3, 1.5), (4, 2.0)]
    # linear decay over 4 steps: after k scheduler steps the rate is lr (1 - k / 4)
    assert [m["learning_rate"] for m in logged] == pytest.approx([1e-3 * (1 - k / 4) for k in range(1, 5)])
    saved = json.loads((out / "checkpoint-3" / "state" / "scheduler.json").read_text())["lr_scheduler"]
    assert saved["last_epoch"] == 3  # the scheduler stepped once per optimizer step


def test_resume_picks_the_checkpoint_with_the_highest_step(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {"max_steps": 12, "save_steps": 1, "save_total_limit": 0, "batch_size": 3}
    with monkeypatch.context() as patch:
        dies_at_call(patch, SftObjective, 12)
        with pytest.raises(Interrupt):
            train(SftObjective(sft(shapes, tmp_path / "cut", **options)))
    assert len(checkpoints(tmp_path / "cut")) == 11  # checkpoint-9 sorts after checkpoint-11 by name
    capsys.readouterr()
    resumed = train(SftObjective(sft(shapes, tmp_path / "cut", resume=True, **options)))
    assert f"resuming from {tmp_path / 'cut' / 'checkpoint-11'} (step 11)" in capsys.readouterr().out
    assert [m["step"] for m in metrics(resumed)] == list(range(1, 13))


@pytest.mark.parametrize(
    "killed_at_step, complete",
    [
        pytest.param(4, ["checkpoint-2"], id="saving-checkpoint-4"),
        pytest.param(5, ["checkpoint-2", "checkpoint-4"], id="saving-the-final-model"),
    ],
)
def test_a_kill_between_the_weights_and_trainer_state_resumes_from_the_last_complete_checkpoint(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, killed_at_step: int, complete: list[str]
) -> None:
    options = {"max_steps": 5, "save_steps": 2, "save_total_limit": 0, "batch_size": 3, "scheduler": "linear"}
    whole = train(SftObjective(sft(shapes, tmp_path / "whole", **options)))
    write = checkpoint.write_trainer_state

    def killed(folder: Path, state: dict) -> None:
        if state["step"] == killed_at_step:
            raise Interrupt
        write(folder, state)

    with monkeypatch.context() as patch:
        patch.setattr(checkpoint, "write_trainer_state", killed)
        with pytest.raises(Interrupt):
            train(SftObjective(sft(shapes, tmp_path / "cut", **options)))
    cut = tmp_path / "cut"
    staging = cut / ".final.tmp" if killed_at_step == 5 else cut / f".checkpoint-{killed_at_step}.tmp"
    assert (staging / "model.safetensors").is_file()  # the weights were written
    assert [p.name for p in checkpoints(cut)] == complete
    assert not (cut / "trainer_state.json").exists()

    resumed = train(SftObjective(sft(shapes, cut, resume=True, **options)))
    assert_same_weights(whole, resumed)
    assert read_state(resumed)["step"] == 5 and not staging.exists()


def test_a_resumed_dpo_with_precomputed_reference_ends_as_an_uninterrupted_one(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init = train(SftObjective(sft(shapes, tmp_path / "sft", max_steps=3, save_steps=0)))
    options = {
        "data": str(shapes), "init": str(init), "max_steps": 4, "save_steps": 2, "batch_size": 4, "lr": 3e-3,
        "beta": 0.5, "log_steps": 1, "precompute_ref_logps": True,
    }  # fmt: skip
    whole = train(DpoObjective(DpoConfig(out=str(tmp_path / "whole"), **options)))
    with monkeypatch.context() as patch:
        dies_at_call(patch, DpoObjective, 3)
        with pytest.raises(Interrupt):
            train(DpoObjective(DpoConfig(out=str(tmp_path / "cut"), **options)))
    resumed = train(DpoObjective(DpoConfig(out=str(tmp_path / "cut"), resume=True, **options)))

    assert_same_weights(whole, resumed)
    # the rewards after resuming are measured against the initial policy, not against the resumed one
    for a, b in zip(metrics(whole), metrics(resumed), strict=True):
        assert a == pytest.approx(b | {"samples_per_second": a["samples_per_second"]}, rel=1e-6)
    assert abs(metrics(resumed)[2]["rewards/margins"]) > 1e-4


def test_an_empty_split_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(TrainError, match="no training examples"):
        train(SftObjective(sft(make_empty(tmp_path), tmp_path / "out")))


def make_empty(tmp_path: Path) -> Path:
    from syngen.export import CardInfo, export_dataset
    from tests.train.shapes import make_sample

    sample = make_sample(0, ()) | {"regions": []}
    export_dataset(iter([sample]), tmp_path / "empty", CardInfo(name="empty"))
    return tmp_path / "empty"
