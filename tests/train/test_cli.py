"""`syngen train sft`, `syngen train dpo` and `syngen eval ris` from the command line, as docs/training.md shows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.data import load_preference
from syngen.devtools.shapes import make_shapes_dataset
from syngen.train.policy import TextPromptableSam

REPO = Path(__file__).resolve().parents[2]
TINY = [
    "--sam-model-name-or-path", "tiny:segmenter", "--text-encoder-name-or-path", "tiny:text-encoder",
    "--prompter-heads", "2",
]  # fmt: skip


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_sft_then_dpo_from_a_config_file_then_eval(tmp_path: Path) -> None:
    data = make_shapes_dataset(tmp_path / "shapes", images=2, kinds=("dilated",))
    invoke(
        "train", "sft", "--dataset-name", str(data), "--output-dir", str(tmp_path / "sft"), "--max-steps", "2", *TINY
    )
    config = tmp_path / "dpo.yaml"
    config.write_text(
        f"dataset_name: {data}\nmodel_name_or_path: {tmp_path / 'sft'}\nmax_steps: 5\nbeta: 0.2\nloss_type: hinge\n"
    )
    invoke(
        "train",
        "dpo",
        "--config",
        str(config),
        "--output_dir",
        str(tmp_path / "dpo"),
        "--max-steps",
        "2",
        "--logging_steps",
        "1",
    )
    used = json.loads((tmp_path / "dpo" / "training_config.json").read_text())
    assert (used["max_steps"], used["beta"], used["loss_type"]) == (2, 0.2, "hinge")  # the command line wins
    logged = [json.loads(line) for line in (tmp_path / "dpo" / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == [1, 2]
    for name in ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"):
        assert name in logged[0]
    assert {"logps/chosen", "logps/rejected", "learning_rate", "samples_per_second"} <= set(logged[0])
    card = (tmp_path / "dpo" / "README.md").read_text()
    assert str(tmp_path / "sft") in card and "tiny:segmenter" in card
    output = invoke("eval", "ris", "--model", str(tmp_path / "dpo"), "--data", str(data))
    report = json.loads((tmp_path / "dpo" / "eval-ris-shapes" / "report.json").read_text())
    assert report["metrics"]["train"]["n"] == 4 and "mIoU" in output


def test_dpo_trains_on_the_pairs_left_after_filtering_in_place(tmp_path: Path) -> None:
    """Issue 25's workflow: read a dataset, drop pairs from its parquet in place (the card kept), retrain."""
    data = make_shapes_dataset(tmp_path / "shapes", images=2, kinds=("dilated", "eroded", "shifted"))
    assert len(load_preference(data / "dataset")) == 12  # read once: datasets has cached it
    shard = next((data / "dataset/data/preference").glob("*.parquet"))
    pq.write_table(pq.read_table(shard).slice(0, 5), shard)
    TextPromptableSam.from_parts("tiny:segmenter", "tiny:text-encoder", prompter_heads=2).save_pretrained(
        tmp_path / "init"
    )
    output = invoke(
        "train", "dpo", "--dataset-name", str(data), "--model-name-or-path", str(tmp_path / "init"),
        "--output-dir", str(tmp_path / "dpo"), "--max-steps", "1",
    )  # fmt: skip
    assert "dpo: training on 5 pairs" in output


def test_a_missing_dataset_fails_with_its_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["train", "sft", "--dataset-name", str(tmp_path / "nowhere"), "--output-dir", str(tmp_path), *TINY]
    )
    assert result.exit_code == 2
    assert "nowhere" in result.output and "grounding" in result.output


@pytest.mark.slow
def test_quickstart_output_through_sft_dpo_and_eval(tmp_path: Path) -> None:
    """The README's trainer example (docs/training.md's too), as subprocesses, on the quickstart's output."""

    def syngen(*args: str) -> None:
        done = subprocess.run([sys.executable, "-m", "syngen.cli", *args], cwd=REPO, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr

    out = tmp_path / "quickstart"
    syngen("run", "recipes/quickstart.yaml", "--out", str(out), "--no-progress")
    syngen("train", "sft", "--dataset-name", str(out), "--output-dir", str(tmp_path / "sft"), "--max-steps", "4", *TINY)
    syngen("train", "dpo", "--dataset-name", str(out), "--model-name-or-path", str(tmp_path / "sft"),
           "--output-dir", str(tmp_path / "dpo"), "--max-steps", "4")  # fmt: skip
    syngen("eval", "ris", "--model", str(tmp_path / "dpo"), "--data", str(out))
    report = json.loads((tmp_path / "dpo" / "eval-ris-quickstart" / "report.json").read_text())
    assert report["metrics"]["train"]["n"] > 0
