"""The checkpoint folder: ordered by step, incomplete ones skipped, every file fsync'ed before trainer_state.json."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import pytest

from syngen.train import checkpoint
from syngen.train.checkpoint import checkpoints, latest_checkpoint, prune, read_state, write_model_folder
from syngen.train.config import SftConfig


def make_checkpoints(out: Path, steps: range, incomplete: tuple[int, ...] = ()) -> None:
    for step in steps:
        folder = out / f"checkpoint-{step}"
        folder.mkdir(parents=True)
        if step not in incomplete:
            (folder / "trainer_state.json").write_text(json.dumps({"step": step}))


def test_checkpoints_are_ordered_by_step_not_by_name(tmp_path: Path) -> None:
    make_checkpoints(tmp_path, range(1, 13))
    (tmp_path / ".checkpoint-13.tmp").mkdir()  # a staging folder is never a checkpoint
    assert [p.name for p in checkpoints(tmp_path)] == [f"checkpoint-{s}" for s in range(1, 13)]
    assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-12"
    prune(tmp_path, keep=3)
    assert sorted(int(p.name.split("-")[1]) for p in tmp_path.glob("checkpoint-*")) == [10, 11, 12]


def test_a_checkpoint_without_trainer_state_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(logging.getLogger("syngen"), "propagate", True)  # the CLI's setup turns it off
    make_checkpoints(tmp_path, range(8, 12), incomplete=(10, 11))
    with caplog.at_level(logging.WARNING, logger="syngen.train.checkpoint"):
        assert latest_checkpoint(tmp_path) == tmp_path / "checkpoint-9"
    warned = sorted({r.getMessage() for r in caplog.records})  # a handler can see a record twice after the CLI's setup
    assert len(warned) == 2
    assert str(tmp_path / "checkpoint-10") in warned[0] and str(tmp_path / "checkpoint-11") in warned[1]
    assert "trainer_state.json" in warned[0]
    assert [p.name for p in checkpoints(tmp_path)] == ["checkpoint-8", "checkpoint-9"]
    assert latest_checkpoint(tmp_path / "nowhere") is None


CONFIG = SftConfig(dataset_name="d", output_dir="o")


def save_weights(path: Path) -> None:
    (path / "model.safetensors").write_bytes(b"weights")
    (path / "sub").mkdir()
    (path / "sub" / "tokenizer.json").write_text("{}")


@pytest.mark.parametrize(
    "final",
    [pytest.param(False, id="checkpoint-renamed-in"), pytest.param(True, id="final-model-moved-into-the-output")],
)
def test_trainer_state_is_written_last_after_every_file_is_fsynced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, final: bool
) -> None:
    synced: list[str] = []  # the files fsync'ed, in order
    fsync = checkpoint.fsync
    monkeypatch.setattr(checkpoint, "fsync", lambda p: (synced.extend([Path(p).name] * Path(p).is_file()), fsync(p)))
    folder = tmp_path / "out" if final else tmp_path / "checkpoint-3"
    staging = folder / ".final.tmp" if final else tmp_path / ".checkpoint-3.tmp"
    (staging / "state").mkdir(parents=True)
    (staging / "state" / "optimizer.safetensors").write_bytes(b"state")
    write_model_folder(folder, save_weights, CONFIG, {"step": 3}, {}, staging)

    assert not staging.exists() and read_state(folder) == {"step": 3}
    assert synced[-1] == "trainer_state.json" and synced.count("trainer_state.json") == 1, synced
    expected = {"model.safetensors", "tokenizer.json", "optimizer.safetensors", "training_config.json", "README.md"}
    assert set(synced[:-1]) == expected, synced
    assert (folder / "sub" / "tokenizer.json").read_text() == "{}"
    assert (folder / "state" / "optimizer.safetensors").read_bytes() == b"state"


def test_a_final_model_cut_while_moving_in_leaves_no_trainer_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "trainer_state.json").write_text(json.dumps({"step": 2}))  # a model from an earlier run
    (out / "model.safetensors").write_bytes(b"old")
    replace = os.replace

    def killed_at_the_weights(src: Path, dst: Path) -> None:
        if Path(dst).name == "model.safetensors":
            raise KeyboardInterrupt
        replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", killed_at_the_weights)
    with pytest.raises(KeyboardInterrupt):
        write_model_folder(out, save_weights, CONFIG, {"step": 5}, {}, out / ".final.tmp")
    assert not (out / "trainer_state.json").exists()  # never the old step's state beside new files
    assert (out / ".final.tmp" / "trainer_state.json").exists()  # it had been written, in staging
