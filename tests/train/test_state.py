"""A checkpoint's state/: restored exactly, never through a pickle; a damaged checkpoint is refused naming its path."""

from __future__ import annotations

import pickle
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import get_scheduler
from typer.testing import CliRunner

from syngen.cli import app
from syngen.devtools.shapes import make_shapes_dataset
from syngen.errors import TrainError
from syngen.train.config import SftConfig
from syngen.train.loop import make_accelerator, train
from syngen.train.sft import SftObjective
from syngen.train.state import restore_state, save_state

TINY = {
    "sam_model_name_or_path": "tiny:segmenter",
    "text_encoder_name_or_path": "tiny:text-encoder",
    "prompter_heads": 2,
}
OPTIONS = {"max_steps": 3, "save_steps": 2, "per_device_train_batch_size": 4, **TINY}


def test_model_optimizer_scheduler_and_random_states_round_trip(tmp_path: Path) -> None:
    accelerator = make_accelerator(cpu=True)

    def build(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
        torch.manual_seed(seed)
        model = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Dropout(0.5), torch.nn.Linear(4, 1))
        optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.9), weight_decay=0.1)
        return model, optimizer, get_scheduler("linear", optimizer, 1, 10)

    def steps(model: torch.nn.Module, optimizer: torch.optim.Optimizer, scheduler, n: int) -> list[float]:
        """``n`` training steps (dropout and data from torch's generator), then a draw from each generator."""
        for _ in range(n):
            model(torch.randn(5, 3)).pow(2).mean().backward()
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        return [random.random(), float(np.random.rand()), float(torch.rand(1))]

    model, optimizer, scheduler = build(0)
    steps(model, optimizer, scheduler, 3)
    (tmp_path / "checkpoint-3" / "state").mkdir(parents=True)
    save_state(tmp_path / "checkpoint-3" / "state", accelerator, model, optimizer, scheduler)
    expected = steps(model, optimizer, scheduler, 2)

    fresh, fresh_optimizer, fresh_scheduler = build(1)
    restore_state(tmp_path / "checkpoint-3", accelerator, fresh, fresh_optimizer, fresh_scheduler)
    assert fresh_optimizer.param_groups[0]["betas"] == (0.8, 0.9)
    assert steps(fresh, fresh_optimizer, fresh_scheduler, 2) == expected
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert fresh_scheduler.get_last_lr() == scheduler.get_last_lr()
    assert not list((tmp_path / "checkpoint-3").rglob("*.pkl"))


class _Creates:
    """Unpickles by creating ``marker``: what a crafted pickle in a checkpoint could do (or run any command)."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (open, (str(self.marker), "w"))


def crafted_pickle(marker: Path) -> bytes:
    return pickle.dumps(_Creates(marker))


def test_the_crafted_pickle_runs_when_unpickled(tmp_path: Path) -> None:
    """The payload the tests below plant is live: unpickling it creates its marker file."""
    pickle.loads(crafted_pickle(tmp_path / "proof"))  # noqa: S301 (the point of the test)
    assert (tmp_path / "proof").exists()


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A dataset and a finished run's output folder (checkpoint-2 and the final model)."""
    root = tmp_path_factory.mktemp("state")
    data = make_shapes_dataset(root / "shapes", images=2)
    return data, train(SftObjective(SftConfig(dataset_name=str(data), output_dir=str(root / "run"), **OPTIONS)))


def plant(name: str) -> Callable[[Path, Path], None]:
    return lambda checkpoint, marker: (checkpoint / name).write_bytes(crafted_pickle(marker))


def accelerate_format(checkpoint: Path, marker: Path) -> None:
    """The state/ folder of checkpoints made before this format: accelerate's save_state, with its pickles."""
    for path in (checkpoint / "state").iterdir():
        if path.name != "model.safetensors":
            path.unlink()
    for name in ("optimizer.bin", "random_states_0.pkl", "custom_checkpoint_0.pkl"):
        (checkpoint / "state" / name).write_bytes(crafted_pickle(marker))


def truncate(name: str) -> Callable[[Path, Path], None]:
    def cut(checkpoint: Path, marker: Path) -> None:
        path = checkpoint / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])

    return cut


DAMAGE = [
    pytest.param(plant("state/custom_checkpoint_0.pkl"), {}, ["state/custom_checkpoint_0.pkl"], id="crafted-pickle"),
    pytest.param(accelerate_format, {}, ["custom_checkpoint_0.pkl, state/random_states_0.pkl"], id="older-format"),
    pytest.param(plant("notes.pkl"), {}, ["notes.pkl"], id="pickle-beside-the-weights"),
    pytest.param(truncate("model.safetensors"), {}, ["{c}/model.safetensors: truncated"], id="truncated-weights"),
    pytest.param(
        truncate("state/optimizer.safetensors"),
        {},
        ["{c}/state/optimizer.safetensors: truncated"],
        id="truncated-state",
    ),
    pytest.param(lambda c, m: shutil.rmtree(c / "state"), {}, ["{c}/state: no such folder"], id="no-state-folder"),
    pytest.param(
        lambda c, m: (c / "state" / "rng-0.safetensors").unlink(),
        {},
        ["{c}/state/rng-0.safetensors: missing"],
        id="no-random-states",
    ),
    pytest.param(
        lambda c, m: (c / "state" / "scheduler.json").write_text("{"), {}, ["{c}: its saved state"], id="bad-json"
    ),
    pytest.param(
        lambda c, m: None,
        {"prompter_layers": 1},
        ["{c}: its saved state", "training_config.json"],
        id="state-of-another-model",
    ),  # fmt: skip
]


@pytest.mark.parametrize("damage, options, expected", DAMAGE)
def test_a_checkpoint_that_cannot_be_resumed_is_refused_naming_the_file(
    finished: tuple[Path, Path],
    tmp_path: Path,
    damage: Callable[[Path, Path], None],
    options: dict,
    expected: list[str],
) -> None:
    data, run = finished
    out = Path(shutil.copytree(run, tmp_path / "run"))
    checkpoint, marker = out / "checkpoint-2", tmp_path / "marker"
    damage(checkpoint, marker)
    config = SftConfig(
        dataset_name=str(data), output_dir=str(out), resume_from_checkpoint="true", **(OPTIONS | options)
    )
    with pytest.raises(TrainError) as raised:
        train(SftObjective(config))
    message = str(raised.value)
    for text in expected:
        assert text.format(c=checkpoint) in message, message
    if "pkl" in message:
        assert "model_name_or_path" in message and str(checkpoint) in message
    assert raised.value.exit_code == 2 and "\n" not in message
    assert not marker.exists()


def test_resume_on_the_command_line_refuses_a_crafted_pickle_without_running_it(
    finished: tuple[Path, Path], tmp_path: Path
) -> None:
    data, run = finished
    out = Path(shutil.copytree(run, tmp_path / "run"))
    marker = tmp_path / "marker"
    (out / "checkpoint-2" / "state" / "custom_checkpoint_0.pkl").write_bytes(crafted_pickle(marker))
    options = ["--max-steps", "3", "--save-steps", "2", "--per-device-train-batch-size", "4", "--prompter-heads", "2"]
    args = ["train", "sft", "--dataset-name", str(data), "--output-dir", str(out), "--resume-from-checkpoint", "true"]
    tiny = ["--sam-model-name-or-path", "tiny:segmenter", "--text-encoder-name-or-path", "tiny:text-encoder"]
    result = CliRunner().invoke(app, [*args, *options, *tiny])
    assert result.exit_code == 2, result.output
    assert "state/custom_checkpoint_0.pkl" in result.output and "Traceback" not in result.output
    assert not marker.exists()
