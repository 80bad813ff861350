"""The training page: a curve per logged metric, the eval reports of the checkpoints and the final model as
metrics over steps; `syngen inspect` recognises a training folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.page import write_page
from syngen.page.training import eval_series
from tests.page.tables import parse

EVALS = {20: 0.25, 40: 0.5, 50: 0.625}  # step -> mIoU of the eval report there


@pytest.fixture
def out(tmp_path: Path) -> Path:
    """A training folder: metrics every 10 steps (the last line cut off by a kill), checkpoints at 20 and 40 and
    the final model at 50, each with an eval report; checkpoint-30 has no report."""
    records = [
        {"step": s, "epoch": s / 50, "loss": 1 / s, "learning_rate": 1e-4, "note": "x"} for s in range(10, 60, 10)
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records) + '{"step": 60, "lo')
    for step, miou in EVALS.items():
        folder = tmp_path if step == 50 else tmp_path / f"checkpoint-{step}"
        folder.mkdir(exist_ok=True)
        (folder / "trainer_state.json").write_text(json.dumps({"step": step, "epoch": step / 50, "objective": "sft"}))
        report = {"model": str(folder), "metrics": {"train": {"n": 4, "mIoU": miou}, "val": {"oIoU": miou / 2}}}
        (folder / "eval-ris-shapes").mkdir()
        (folder / "eval-ris-shapes" / "report.json").write_text(json.dumps(report))  # eval ris's layout
    pointing = {"model": str(tmp_path), "metrics": {"accuracy": 0.75}}
    (tmp_path / "eval-pointing-shapes-train.json").write_text(json.dumps(pointing))  # eval pointing's layout
    (tmp_path / "checkpoint-30").mkdir()
    (tmp_path / "checkpoint-30" / "trainer_state.json").write_text(json.dumps({"step": 30}))
    return tmp_path


def test_eval_metrics_over_steps(out: Path) -> None:
    series = eval_series(out)
    assert sorted(series) == ["eval-pointing-shapes-train", "eval-ris-shapes"]
    metrics = series["eval-ris-shapes"]
    assert metrics["train/mIoU"] == list(EVALS.items())
    assert metrics["val/oIoU"] == [(s, m / 2) for s, m in EVALS.items()]
    assert metrics["train/n"] == [(20, 4.0), (40, 4.0), (50, 4.0)]
    assert series["eval-pointing-shapes-train"] == {"accuracy": [(50, 0.75)]}


def test_page_has_a_curve_per_metric_and_the_eval_table(out: Path) -> None:
    html = write_page(out).read_text()
    assert html.count("<svg") == 2 + 3 + 1  # loss and learning_rate; n, mIoU and oIoU; pointing accuracy
    table = parse(html).tables["eval-eval-ris-shapes"]
    assert table[0] == ["step", "train/n", "train/mIoU", "val/oIoU"]
    assert [row[0] for row in table[1:]] == ["20", "40", "50"] and table[2][2] == "0.5"
    summary = dict(parse(html).tables["summary-table"][1:])
    assert summary["objective"] == "sft" and summary["last loss"] == "0.02" and summary["last note"] == "x"


def test_cli_writes_the_training_page(out: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(out)])
    assert result.exit_code == 0, result.output
    assert "Training curves" in (out / "inspect/index.html").read_text()


def test_a_run_without_eval_reports(tmp_path: Path) -> None:
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"step": 1, "epoch": 0.1, "loss": 0.5}) + "\n")
    html = write_page(tmp_path).read_text()
    assert "no eval reports" in html and html.count("<svg") == 1
