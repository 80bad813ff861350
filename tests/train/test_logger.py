"""The metrics logger: metrics.jsonl and the log history agree, resume rewrites them, TensorBoard when asked."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

from syngen.train.logger import MetricsLogger


def lines(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_records_go_to_the_file_and_the_history(tmp_path: Path) -> None:
    logger = MetricsLogger(tmp_path, 4, 0, ("loss",), "none")
    logger.log(1, 0.5, {"loss": 1.0, "learning_rate": 1e-3})
    logger.log(1, 0.5, {"eval/mIoU": 0.25})
    logger.log(2, 1.0, {"loss": float("nan")})
    logger.close()
    expected = [
        {"step": 1, "epoch": 0.5, "loss": 1.0, "learning_rate": 1e-3},
        {"step": 1, "epoch": 0.5, "eval/mIoU": 0.25},
        {"step": 2, "epoch": 1.0, "loss": "nan"},
    ]
    assert logger.history == expected and lines(tmp_path) == expected
    assert not (tmp_path / "runs").exists()  # report_to none


@pytest.mark.parametrize(
    "history, expected_steps",
    [
        pytest.param(None, [1, 2], id="no-history-keeps-the-file-up-to-the-step"),
        pytest.param([{"step": 1, "epoch": 1.0, "loss": 9.0}], [1], id="the-checkpoints-history-wins"),
    ],
)
def test_resume_rewrites_the_file_from_the_history(
    tmp_path: Path, history: list | None, expected_steps: list[int]
) -> None:
    (tmp_path / "metrics.jsonl").write_text(
        "".join(json.dumps({"step": s, "epoch": s / 2, "loss": float(s)}) + "\n" for s in (1, 2, 3))
    )
    logger = MetricsLogger(tmp_path, 4, 2, ("loss",), "none", history)
    logger.close()
    assert [r["step"] for r in lines(tmp_path)] == expected_steps
    assert lines(tmp_path) == logger.history


def test_tensorboard_events_are_written_when_asked(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logger = MetricsLogger(tmp_path, 4, 0, ("loss",), "tensorboard")
    logger.log(1, 0.5, {"loss": 1.5})
    logger.log(2, 1.0, {"loss": 0.5, "eval/mIoU": 0.75})
    logger.close()
    events = EventAccumulator(str(tmp_path / "runs")).Reload()
    assert sorted(events.Tags()["scalars"]) == ["eval/mIoU", "train/loss"]
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 1.5), (2, 0.5)]
    assert [(e.step, e.value) for e in events.Scalars("eval/mIoU")] == [(2, 0.75)]


def test_a_tensorboard_that_cannot_be_imported_is_skipped_with_a_warning(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, warned: list[str]
) -> None:
    real_import = builtins.__import__

    def no_tensorboard(name: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        if name.startswith("torch.utils.tensorboard") or name.startswith("tensorboard"):
            raise ImportError("No module named 'tensorboard'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tensorboard)
    logger = MetricsLogger(tmp_path, 2, 0, ("loss",), "tensorboard")
    logger.log(1, 1.0, {"loss": 1.0})
    logger.close()
    assert logger.tensorboard is None and not (tmp_path / "runs").exists()
    assert lines(tmp_path) == [{"step": 1, "epoch": 1.0, "loss": 1.0}]
    assert len(warned) == 1 and "report_to tensorboard: cannot import it" in warned[0]
