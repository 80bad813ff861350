"""The shared loop on the sft objective: loss goes down, checkpoints, metrics.jsonl, resume equals no interruption."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from safetensors.torch import load_file

from syngen.devtools.shapes import make_shapes_dataset
from syngen.train import checkpoint
from syngen.train.checkpoint import checkpoints, read_state
from syngen.train.config import DpoConfig, SftConfig
from syngen.train.dpo import DpoObjective
from syngen.train.loop import ConfigError, TrainError, resume_point, train
from syngen.train.policy import TextPromptableSam
from syngen.train.sft import SftObjective

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
    options = {
        "max_steps": 5, "save_steps": save_steps, "per_device_train_batch_size": 3, "lr_scheduler_type": "linear",
        "save_total_limit": 1, "gradient_accumulation_steps": grad_accum,
    }  # fmt: skip
    whole = train(SftObjective(sft(shapes, tmp_path / "whole", **options)))

    with monkeypatch.context() as patch:
        dies_at_call(patch, SftObjective, killed_at_call)
        with pytest.raises(Interrupt):
            train(SftObjective(sft(shapes, tmp_path / "cut", **options)))
    assert [p.name for p in checkpoints(tmp_path / "cut")] == [f"checkpoint-{resumed_from}"]
    resumed = train(SftObjective(sft(shapes, tmp_path / "cut", resume_from_checkpoint="true", **options)))

    assert_same_weights(whole, resumed)
    assert [m["step"] for m in metrics(resumed)] == [1, 2, 3, 4, 5]
    assert [m["loss"] for m in metrics(resumed)] == pytest.approx([m["loss"] for m in metrics(whole)], rel=1e-6)
    assert read_state(resumed)["log_history"] == metrics(resumed)  # the checkpoint's history, then the rest
    assert [p.name for p in checkpoints(whole)] == [f"checkpoint-{kept}"]  # save_total_limit=1 pruned the others


def test_grad_accum_counts_optimizer_steps_per_epoch_and_steps_the_schedule_once_per_step(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    loss = SftObjective.loss
    monkeypatch.setattr(SftObjective, "loss", lambda *a: (calls.__setitem__("n", calls["n"] + 1), loss(*a))[1])
    options = {
        "num_train_epochs": 2, "per_device_train_batch_size": 3, "gradient_accumulation_steps": 2,
        "lr_scheduler_type": "linear", "save_steps": 3, "learning_rate": 1e-3,
    }  # fmt: skip
    out = train(SftObjective(sft(shapes, tmp_path / "run", **options)))
    # 8 regions in batches of 3 = 3 micro-batches per epoch = ceil(3 / 2) = 2 optimizer steps per epoch
    assert calls["n"] == 6
    state = read_state(out)
    assert (state["step"], state["epoch"], state["objective"]) == (4, 2.0, "sft")
    logged = metrics(out)
    assert [(m["step"], m["epoch"]) for m in logged] == [(1, 0.5), (2, 1.0), (3, 1.5), (4, 2.0)]
    # linear decay over 4 steps: after k scheduler steps the rate is lr (1 - k / 4)
    assert [m["learning_rate"] for m in logged] == pytest.approx([1e-3 * (1 - k / 4) for k in range(1, 5)])
    saved = json.loads((out / "checkpoint-3" / "state" / "scheduler.json").read_text())["lr_scheduler"]
    assert saved["last_epoch"] == 3  # the scheduler stepped once per optimizer step


def test_resume_picks_the_checkpoint_with_the_highest_step(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    options = {"max_steps": 12, "save_steps": 1, "save_total_limit": 0, "per_device_train_batch_size": 3}
    with monkeypatch.context() as patch:
        dies_at_call(patch, SftObjective, 12)
        with pytest.raises(Interrupt):
            train(SftObjective(sft(shapes, tmp_path / "cut", **options)))
    assert len(checkpoints(tmp_path / "cut")) == 11  # checkpoint-9 sorts after checkpoint-11 by name
    capsys.readouterr()
    resumed = train(SftObjective(sft(shapes, tmp_path / "cut", resume_from_checkpoint="true", **options)))
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
    options = {
        "max_steps": 5, "save_steps": 2, "save_total_limit": 0, "per_device_train_batch_size": 3,
        "lr_scheduler_type": "linear",
    }  # fmt: skip
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

    resumed = train(SftObjective(sft(shapes, cut, resume_from_checkpoint="true", **options)))
    assert_same_weights(whole, resumed)
    assert read_state(resumed)["step"] == 5 and not staging.exists()


def test_a_resumed_dpo_with_precomputed_reference_ends_as_an_uninterrupted_one(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    init = train(SftObjective(sft(shapes, tmp_path / "sft", max_steps=3, save_steps=0)))
    options = {
        "dataset_name": str(shapes), "model_name_or_path": str(init), "max_steps": 4, "save_steps": 2,
        "per_device_train_batch_size": 4, "learning_rate": 3e-3, "beta": 0.5, "logging_steps": 1,
        "precompute_ref_log_probs": True,
    }  # fmt: skip
    whole = train(DpoObjective(DpoConfig(output_dir=str(tmp_path / "whole"), **options)))
    with monkeypatch.context() as patch:
        dies_at_call(patch, DpoObjective, 3)
        with pytest.raises(Interrupt):
            train(DpoObjective(DpoConfig(output_dir=str(tmp_path / "cut"), **options)))
    resumed = train(DpoObjective(DpoConfig(output_dir=str(tmp_path / "cut"), resume_from_checkpoint="true", **options)))

    assert_same_weights(whole, resumed)
    # the rewards after resuming are measured against the initial policy, not against the resumed one
    for a, b in zip(metrics(whole), metrics(resumed), strict=True):
        assert a == pytest.approx(b | {"samples_per_second": a["samples_per_second"]}, rel=1e-6)
    assert abs(metrics(resumed)[2]["rewards/margins"]) > 1e-4


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
    if options["report_to"] == "tensorboard":
        pytest.importorskip("tensorboard")  # the [tensorboard] extra: .ci/run installs it and runs this case again
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
    from syngen.devtools.shapes import make_sample
    from syngen.export import CardInfo, export_dataset

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


class _Stop(Exception):
    """Ends a training run at the point a test looks at."""


@pytest.mark.parametrize(
    ("cpu_threads", "local", "expected"),
    [
        pytest.param(None, None, (None, 1), id="auto-one-process"),
        pytest.param(3, None, (3, 1), id="fixed"),
        pytest.param(None, "2", (None, 2), id="auto-two-local-processes"),
    ],
)
def test_training_sizes_torch_threads_to_its_share(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, cpu_threads: int | None, local: str | None, expected: tuple
) -> None:
    from syngen.train import loop

    seen: list[tuple] = []

    def record(setting: int | None, processes: int) -> int:
        seen.append((setting, processes))
        raise _Stop

    monkeypatch.setattr(loop, "set_torch_threads", record)
    if local is None:
        monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    else:
        monkeypatch.setenv("LOCAL_WORLD_SIZE", local)
    config = SftConfig(dataset_name="unused", output_dir=str(tmp_path / "out"), cpu_threads=cpu_threads)
    with pytest.raises(_Stop):
        train(SftObjective(config))
    assert seen == [expected]


def test_cpu_threads_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="cpu_threads: expected a number > 0; got 0"):
        SftConfig(dataset_name="d", output_dir="o", cpu_threads=0)
