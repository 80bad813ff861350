"""Shards as separate processes: the merged dataset equals a one-process run's, a killed shard resumes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syngen.cli import app
from tests.executors.conftest import REPO, dataset_rows, ranks, stored_ids


def shard(recipe: Path, out: Path, spec: str | None, **env: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "syngen.cli", "run", str(recipe), "--out", str(out), "--no-progress"]
    return subprocess.Popen(
        cmd + (["--shard", spec] if spec else []),
        cwd=REPO,
        env=os.environ | env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def export(out: Path) -> None:
    result = CliRunner().invoke(app, ["export", str(out)])
    assert result.exit_code == 0, result.output


def test_two_shards_give_the_one_process_dataset(small_recipe: Path, one_process: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    # one shard from the flag, the other from a torchrun-style environment
    procs = [shard(small_recipe, out, "0/2"), shard(small_recipe, out, None, RANK="1", WORLD_SIZE="2")]
    logs = [finish(p) for p in procs]
    assert all("syngen export" in log for log in logs)
    assert not (out / "dataset").exists()  # a shard does not export on its own
    export(out)
    assert dataset_rows(out) == dataset_rows(one_process)
    assert ranks(out, "caption") == {"r0", "r1"}


def test_killed_shard_reruns_with_nothing_lost_or_duplicated(
    small_recipe: Path, one_process: Path, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    victim, other = shard(small_recipe, out, "1/2"), shard(small_recipe, out, "0/2")
    deadline = time.monotonic() + 300
    while victim.poll() is None and time.monotonic() < deadline:
        if list(out.glob("stages/phrases/part-r1-*.parquet")):  # killed after its first phrases batch
            break
        time.sleep(0.02)
    os.kill(victim.pid, signal.SIGKILL)
    victim.wait()
    finish(other)
    log = finish(shard(small_recipe, out, "1/2"))
    assert "shard 1/2 done" in log
    export(out)
    assert dataset_rows(out) == dataset_rows(one_process)
    for stage, ids in stored_ids(out).items():
        assert len(ids) == len(set(ids)) == 6, stage


def test_a_shard_refuses_fresh(small_recipe: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["run", str(small_recipe), "--out", str(tmp_path), "--shard", "0/2", "--fresh"])
    assert result.exit_code == 2 and "--fresh" in result.output
    assert not (tmp_path / "stages").exists()


@pytest.mark.parametrize("spec", ["2/2", "x"])
def test_a_bad_shard_flag_fails_with_a_message(small_recipe: Path, tmp_path: Path, spec: str) -> None:
    result = CliRunner().invoke(app, ["run", str(small_recipe), "--out", str(tmp_path), "--shard", spec])
    assert result.exit_code == 2 and "K/N" in result.output
