"""The quickstart end to end through the CLI: output, rerun without model work, SIGKILL at any moment."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from huggingface_hub import DatasetCard
from typer.testing import CliRunner

from syngen.cli import app
from syngen.data import load_preference
from syngen.engine import stage as engine_stage
from syngen.masks import decode_rle

REPO = Path(__file__).resolve().parent.parent
QUICKSTART = REPO / "recipes" / "quickstart.yaml"


def syngen(*args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "syngen.cli", *args]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def rows(out: Path, config: str) -> list[dict]:
    files = sorted((out / "dataset" / "data" / config).glob("*.parquet"))
    return [row for f in files for row in pq.read_table(f).to_pylist()]


def comparable(out: Path) -> list[tuple]:
    """Grounding rows without the columns that legitimately differ between runs (none expected to)."""
    return sorted(
        (r["id"], r["caption"], tuple(r["phrases"]), r["image"]["bytes"], json.dumps(r["regions"], sort_keys=True))
        for r in rows(out, "grounding")
    )


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The quickstart, run with one torch thread whatever the machine's cores (floats' last digits follow it)."""
    out = tmp_path_factory.mktemp("ref") / "quickstart"
    threads = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = "1"  # caps syngen's CPU share (syngen.cpus): torch gets one thread
    try:
        finish(syngen("run", str(QUICKSTART), "--out", str(out), "--no-progress"))
    finally:
        if threads is None:
            del os.environ["OMP_NUM_THREADS"]
        else:
            os.environ["OMP_NUM_THREADS"] = threads
    yield out


def rounded(value: Any) -> Any:
    """``value`` with every float to 6 significant digits: another CPU's kernels may change the last bits."""
    if isinstance(value, float):
        return float(f"{value:.6g}")
    if isinstance(value, dict):
        return {k: rounded(v) for k, v in value.items()}
    if isinstance(value, list):
        return [rounded(v) for v in value]
    return value


# sha256 of the quickstart's rows per config (every column but the overlay drawing and the provenance, floats to 6
# significant digits, as JSON with bytes in hex, keys sorted), computed from the export of the commit before the
# engine change of issue 23 (894da99), on CPU with one torch thread: moving the scheduling must not change a row
QUICKSTART_ROWS = {
    "grounding": "4358ab9133c5f8f267865fa7a9068c76b470bd13ee2748bdb0e0d2e46476ca72",
    "preference": "d89601672926fb118816eb4503697f4bdd033b02df4ce83e1141753a7f734e71",
}


@pytest.mark.parametrize("config", sorted(QUICKSTART_ROWS))
def test_quickstart_rows_are_those_pinned(reference: Path, config: str) -> None:
    assert rows_digest(reference, config) == QUICKSTART_ROWS[config]


def rows_digest(out: Path, config: str) -> str:
    table = [{k: v for k, v in row.items() if k not in ("overlay", "provenance")} for row in rows(out, config)]
    blob = json.dumps(rounded(table), sort_keys=True, default=lambda b: b.hex()).encode()
    return hashlib.sha256(blob).hexdigest()


def test_quickstart_makes_both_configs(reference: Path) -> None:
    report = json.loads((reference / "run.json").read_text())
    for name, stage in report["stages"].items():
        assert stage["items_in"] == stage["items_out"] + stage["failed"], name
    grounding = rows(reference, "grounding")
    assert len(grounding) == report["stages"]["views"]["items_out"] > 0
    regions = [r for row in grounding for r in row["regions"]]
    assert regions, "the quickstart should produce regions"
    for row in grounding:
        for region in row["regions"]:
            assert decode_rle(region["mask"]).shape == (row["height"], row["width"])
    pairs = load_preference(reference / "dataset")
    assert (
        len(pairs)
        == report["stages"]["negatives"]["stats"]["boundary_accepted"]
        + report["stages"]["negatives"]["stats"]["semantic_accepted"]
    )
    assert pairs[0]["chosen_mask"].size == (pairs[0]["image"].width, pairs[0]["image"].height)
    card = DatasetCard.load(reference / "dataset" / "README.md")
    assert {c["config_name"] for c in card.data["configs"]} == {"grounding", "preference"}


def test_the_cards_reproduce_command_rebuilds_the_dataset_verbatim(reference: Path, tmp_path: Path) -> None:
    """A reader of the dataset copies its folder anywhere and runs the card's "Reproduce" command in it as written:
    the recipe's bundled seeds and prompts are found from there and the same dataset comes out where the card says."""
    downloaded = tmp_path / "downloaded"
    shutil.copytree(reference / "dataset", downloaded)
    section = (downloaded / "README.md").read_text().split("## Reproduce", 1)[1]
    command = shlex.split(section.split("```bash\n", 1)[1].split("```", 1)[0])
    assert command[0] == "syngen" and "`outputs/quickstart/dataset/`" in section
    env = os.environ | {"PYTHONPATH": str(REPO)}  # this checkout's syngen, as `syngen` would run it
    proc = subprocess.run(
        [sys.executable, "-m", "syngen.cli", *command[1:]], cwd=downloaded, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert comparable(downloaded / "outputs" / "quickstart") == comparable(reference)


def test_quickstart_dataset_is_at_most_two_and_a_half_times_its_images(reference: Path) -> None:
    """Images are stored once. The rest is masks: the SAM twin (random weights, seeing the image since TINY_VERSION
    3) draws speckled masks whose RLEs and PNGs weigh about as much as the images (1.97× in all when measured)."""
    dataset = reference / "dataset"
    published = sum(f.stat().st_size for f in dataset.rglob("*") if f.is_file())
    images = sum(len(r["image"]["bytes"]) for r in rows(reference, "grounding"))
    assert rows(reference, "preference") and "image" not in rows(reference, "preference")[0]
    assert published <= 2.5 * images


def test_rerun_does_no_model_work(reference: Path) -> None:
    before = comparable(reference)
    finish(syngen("run", str(QUICKSTART), "--out", str(reference), "--no-progress"))
    report = json.loads((reference / "run.json").read_text())
    assert all(stage["computed"] == 0 and stage["load_s"] == 0 for stage in report["stages"].values())
    assert comparable(reference) == before


def test_second_run_on_same_folder_is_locked(reference: Path) -> None:
    from filelock import FileLock

    with FileLock(str(reference / ".lock")):
        proc = syngen("run", str(QUICKSTART), "--out", str(reference), "--no-progress")
        out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 1 and "another syngen run" in out


def test_sigkill_at_any_moment_then_rerun_matches(reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    for parts_before_kill in (1, 5, 12):
        proc = syngen("run", str(QUICKSTART), "--out", str(out), "--no-progress")
        deadline = time.monotonic() + 300
        while proc.poll() is None and time.monotonic() < deadline:
            if len(list(out.glob("stages/*/part-*.parquet"))) >= parts_before_kill:
                break
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    finish(syngen("run", str(QUICKSTART), "--out", str(out), "--no-progress"))
    assert comparable(out) == comparable(reference)
    for stage in (out / "stages").iterdir():  # every input stored exactly once
        ids = [
            i
            for p in stage.glob("part-*.parquet")
            for i in set(pq.read_table(p, columns=["input_id"]).column(0).to_pylist())
        ]
        assert len(ids) == len(set(ids)), stage.name


def test_results_finishing_beside_a_gpu_give_the_same_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Beside a GPU, the engine runs the stages' finish (segment's and negatives' masks and RLEs, synthesize's PNGs)
    in the run's thread pool while it calls the next batch: with that scheduling (batches of 1, so every batch but
    the last is held over a call) the dataset is the one made inline with the same batches (other batch sizes
    round SAM differently)."""
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["source"]["path"] = str(REPO / "recipes" / "seeds" / "quickstart")
    recipe["stages"]["segment"]["batch_size"] = recipe["stages"]["negatives"]["batch_size"] = 1
    recipe["runtime"]["cpu_threads"] = 2  # torch 1 thread, the pool 1: the pool's own thread, whatever the machine
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    made = {}
    for where in ("inline", "pool"):
        if where == "pool":
            monkeypatch.setattr(engine_stage, "on_gpu", lambda device: True)
        result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / where), "--no-progress"])
        assert result.exit_code == 0, result.output
        made[where] = comparable(tmp_path / where)
    assert made["pool"] == made["inline"] and made["inline"]


def test_missing_model_fails_before_any_compute(tmp_path: Path) -> None:
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["source"]["path"] = str(REPO / "recipes" / "seeds" / "quickstart")
    recipe["stages"]["ground"]["model"] = "some-org/grounder-not-cached"
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert result.exit_code == 1 and "some-org/grounder-not-cached" in result.output and "hf download" in result.output
    assert not list((tmp_path / "out").glob("stages/*/part-*.parquet"))


def test_recipe_push_to_hub_pushes_after_export(
    reference: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import syngen.push

    sent = {}
    monkeypatch.setattr(
        syngen.push,
        "push_dataset",
        lambda folder, repo_id, **kw: sent.update(folder=folder, repo_id=repo_id, **kw) or "url",
    )
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["source"]["path"] = str(REPO / "recipes" / "seeds" / "quickstart")
    recipe["output"] |= {"push_to_hub": "me/quick", "private": True, "revision": "v1"}
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(reference), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert sent == {"folder": reference / "dataset", "repo_id": "me/quick", "private": True, "revision": "v1"}


def test_export_rewrites_the_same_dataset_and_never_drops_results(reference: Path, tmp_path: Path) -> None:
    before = comparable(reference)
    result = CliRunner().invoke(app, ["export", str(reference), "--repo-id", "me/quick"])
    assert result.exit_code == 0, result.output
    assert comparable(reference) == before
    assert 'load_dataset("me/quick", "grounding"' in (reference / "dataset" / "README.md").read_text()
    failed = sum(s["failed"] for s in json.loads((reference / "run.json").read_text())["stages"].values())
    assert len((reference / "failures.jsonl").read_text().splitlines()) == failed
    changed = yaml.safe_load(QUICKSTART.read_text())
    changed["source"]["path"] = str(REPO / "recipes" / "seeds" / "quickstart")
    changed["stages"]["ground"]["box_threshold"] = 0.5
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(changed))
    parts = sorted(reference.glob("stages/*/part-*.parquet"))
    result = CliRunner().invoke(app, ["export", str(reference), "--recipe", str(path)])
    assert result.exit_code == 2 and "other settings" in result.output
    assert sorted(reference.glob("stages/*/part-*.parquet")) == parts


def test_inspect_writes_sheets_and_page(reference: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(reference), "--n", "4"])
    assert result.exit_code == 0, result.output
    for name in ("contact_sheet.png", "preference.png", "index.html"):
        assert (reference / "inspect" / name).stat().st_size > 0
    assert "preference pairs" in result.output


def test_coco_export_of_the_quickstart_round_trips(reference: Path) -> None:
    """On real twin output: pycocotools gives back every region's mask, one annotation per region."""
    from pycocotools.coco import COCO

    result = CliRunner().invoke(app, ["export", str(reference), "--format", "coco"])
    assert result.exit_code == 0, result.output
    coco = COCO(str(reference / "export/coco/instances.json"))
    regions = [r for row in rows(reference, "grounding") for r in row["regions"]]
    assert len(coco.anns) == len(regions) > 0
    for ann_id, region in zip(sorted(coco.anns), regions, strict=True):
        assert np.array_equal(coco.annToMask(coco.anns[ann_id]).astype(bool), decode_rle(region["mask"]))


def test_push_offline_fails_cleanly_and_leaves_the_dataset(reference: Path) -> None:
    before = {p: p.read_bytes() for p in (reference / "dataset").rglob("*") if p.is_file()}
    start = time.monotonic()
    result = CliRunner().invoke(app, ["push", str(reference), "--repo-id", "me/quick"])
    assert result.exit_code == 1 and "HF_HUB_OFFLINE" in result.output
    assert time.monotonic() - start < 10
    assert {p: p.read_bytes() for p in (reference / "dataset").rglob("*") if p.is_file()} == before


def test_train_amc_then_eval_pointing_on_the_quickstart(reference: Path, tmp_path: Path) -> None:
    """docs/training.md's AMC example on the quickstart's output, through the CLI."""
    from typer.testing import CliRunner

    from syngen.cli import app

    runner = CliRunner()
    amc = tmp_path / "amc"
    trained = runner.invoke(
        app,
        ["train", "amc", "--data", str(reference), "--out", str(amc), "--model", "tiny:itm-blip", "--max-steps", "2"],
    )
    assert trained.exit_code == 0, trained.output
    assert [json.loads(line)["step"] for line in (amc / "metrics.jsonl").read_text().splitlines()] == [2]
    scored = runner.invoke(
        app,
        ["eval", "pointing", "--model", str(amc), "--baseline", "tiny:itm-blip", "--data", str(reference)]
        + ["--heatmaps", "8"],
    )
    assert scored.exit_code == 0, scored.output
    report = json.loads((amc / "eval-pointing-quickstart-train.json").read_text())
    phrases = len({(row["id"], r["phrase"]) for row in rows(reference, "grounding") for r in row["regions"]})
    assert report["metrics"]["n"] == report["baseline"]["metrics"]["n"] == phrases
    assert (amc / "eval-pointing-quickstart-train-heatmaps.png").exists()


def test_the_pool_size_leaves_the_dataset_unchanged(tmp_path: Path) -> None:
    """runtime.cpu_threads 1 (torch 1 thread, the pool's work inline) and 2 (torch 1, the pool 1 thread) make the
    same rows, every column (torch's own thread count is held at 1: it changes floats' last digits)."""
    recipe = yaml.safe_load(QUICKSTART.read_text())
    recipe["source"]["path"] = str(REPO / "recipes" / "seeds" / "quickstart")
    made = {}
    for threads in (1, 2):
        recipe["runtime"]["cpu_threads"] = threads
        path = tmp_path / f"r{threads}.yaml"
        path.write_text(yaml.safe_dump(recipe))
        out = tmp_path / f"out{threads}"
        result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--no-progress"])
        assert result.exit_code == 0, result.output
        made[threads] = {config: rows(out, config) for config in ("grounding", "preference")}
    assert made[1] == made[2] and made[1]["grounding"] and made[1]["preference"]
