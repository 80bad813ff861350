"""The runner's error paths: OOM shrinking, failure isolation, result counts, --fresh, re-export, atomic writes."""

from __future__ import annotations

import errno
import io
import json
import os
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import torch
import yaml
from pydantic import Field

from syngen import stages as registry
from syngen.executors.local import run
from syngen.recipe import load_recipe
from syngen.sample import Sample
from syngen.stages.base import Outcome
from tests import fault_stages
from tests.fault_stages import Caption, FakeConfig

SEEN: list[int] = []  # the batch sizes the caption model was called with


class ProbeConfig(FakeConfig):
    oom_above: int = Field(0, description="Raise out-of-memory for batches larger than this (0: never, -1: always).")
    oom_error: str = Field("typed", description="typed: torch.cuda.OutOfMemoryError; text: a RuntimeError.")
    bad_item: str = Field("", description="A batch holding this source item raises ValueError.")
    short: bool = Field(False, description="Return one result too few for batches of more than one.")
    suffix: str = Field("", description="Appended to every caption.")


class ProbeCaption(Caption):
    """The fake captioner, with the faults above."""

    Config = ProbeConfig

    def process(self, samples: list[Sample], model: Any = None) -> list[Outcome]:
        cfg: ProbeConfig = self.config  # type: ignore[assignment]
        SEEN.append(len(samples))
        if cfg.oom_above and len(samples) > cfg.oom_above:
            if cfg.oom_error == "typed":  # no "out of memory" in the text: only the type says so
                raise torch.cuda.OutOfMemoryError("CUDA error: failed to allocate 20.00 GiB")
            raise RuntimeError("CUDA out of memory. Tried to allocate 20.00 GiB")
        if any(s["source"]["item"] == cfg.bad_item for s in samples):
            raise ValueError(f"cannot caption {cfg.bad_item}")
        results = [r | {"caption": r["caption"] + cfg.suffix} for r in super().process(samples, model)]  # type: ignore[operator]
        return results[:-1] if cfg.short and len(samples) > 1 else results


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    SEEN.clear()
    for name, cls in fault_stages.FAKES.items():
        monkeypatch.setitem(registry.STAGES, name, f"tests.fault_stages:{cls.__name__}")
    monkeypatch.setitem(registry.STAGES, "caption", f"{__name__}:ProbeCaption")


def recipe_with(tmp_path: Path, seeds: int = 10, wave_size: int = 5, **caption: Any):
    return load_recipe(
        fault_stages.write_recipe(tmp_path, seeds, stages={"caption": {"batch_size": 8} | caption}, wave_size=wave_size)
    )


def captions(out: Path) -> dict[str, str]:
    rows = [
        r
        for f in sorted((out / "dataset" / "data" / "grounding").glob("*.parquet"))
        for r in pq.read_table(f).to_pylist()
    ]
    return {r["provenance"]["source_item"]: r["caption"] for r in rows}


def assert_counts_add_up(report: dict) -> None:
    for name, stage in report["stages"].items():
        assert stage["items_in"] == stage["items_out"] + stage["failed"], name


@pytest.mark.parametrize("oom_error", ["typed", "text"], ids=["torch-oom-type", "oom-message"])
def test_out_of_memory_halves_the_batch_and_keeps_it_halved(tmp_path: Path, oom_error: str) -> None:
    report = run(recipe_with(tmp_path, oom_above=2, oom_error=oom_error), tmp_path / "out", progress=False)
    # wave 1: 5 fails, then chunks of 2; wave 2 starts at the shrunk size
    assert SEEN == [5, 2, 2, 1, 2, 2, 1]
    assert report["stages"]["caption"]["items_out"] == 10 and report["stages"]["caption"]["failed"] == 0


def test_oom_at_batch_size_one_fails_the_sample_and_a_run_failing_all_exits_1(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from syngen.cli import app

    path = fault_stages.write_recipe(tmp_path, 3, stages={"caption": {"batch_size": 2, "oom_above": -1}})
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(tmp_path / "out"), "--no-progress"])
    assert SEEN == [2, 1, 1, 1]
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "the caption stage failed all 3 samples; the most common reason is OutOfMemoryError (3 samples)" in (
        " ".join(result.output.split())
    )


def test_failing_batch_isolates_the_bad_sample(tmp_path: Path) -> None:
    report = run(recipe_with(tmp_path, seeds=5, bad_item="seed 02.png"), tmp_path / "out", progress=False)
    assert SEEN == [5, 1, 1, 1, 1, 1]
    stage = report["stages"]["caption"]
    assert (stage["items_in"], stage["items_out"], stage["failed"]) == (5, 4, 1)
    assert stage["failures"] == {"ValueError": 1}
    assert stage["failure_examples"]["ValueError"] == "cannot caption seed 02.png"
    assert sorted(captions(tmp_path / "out")) == ["seed 00.png", "seed 01.png", "seed 03.png", "seed 04.png"]


def test_a_stage_returning_too_few_results_loses_no_sample(tmp_path: Path) -> None:
    report = run(recipe_with(tmp_path, seeds=4, short=True), tmp_path / "out", progress=False)
    assert SEEN == [4, 1, 1, 1, 1]  # the short batch is redone sample by sample
    assert report["stages"]["caption"]["items_out"] == 4 and report["stages"]["caption"]["failed"] == 0
    assert len(captions(tmp_path / "out")) == 4


def test_fresh_recomputes_everything(tmp_path: Path) -> None:
    recipe = recipe_with(tmp_path, seeds=4)
    run(recipe, tmp_path / "out", progress=False)
    before = captions(tmp_path / "out")
    SEEN.clear()
    report = run(recipe, tmp_path / "out", fresh=True, progress=False)
    assert report["stages"]["caption"]["computed"] == 4 and sum(SEEN) == 4
    assert captions(tmp_path / "out") == before


def test_settings_change_reexports_and_card_change_rewrites_card(tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(recipe_with(tmp_path, seeds=3), out, progress=False)
    run(recipe_with(tmp_path, seeds=3, suffix="!"), out, progress=False)
    assert all(c.endswith("!") for c in captions(out).values()) and len(captions(out)) == 3
    SEEN.clear()
    path = tmp_path / "recipe.yaml"
    data = yaml.safe_load(path.read_text())
    data["output"] = {"license": "cc-by-4.0", "pretty_name": "Renamed set"}
    path.write_text(yaml.safe_dump(data))
    report = run(load_recipe(path), out, progress=False)
    assert SEEN == [] and report["stages"]["caption"]["computed"] == 0  # nothing recomputed...
    card = (out / "dataset" / "README.md").read_text()
    assert "license: cc-by-4.0" in card and "# Renamed set" in card  # ...but the card and recipe copy are new
    assert "cc-by-4.0" in (out / "dataset" / "recipe.yaml").read_text()


def test_counts_add_up_on_a_resumed_run(tmp_path: Path) -> None:
    recipe = recipe_with(tmp_path, seeds=6, wave_size=2, bad_item="seed 05.png")
    run(recipe, tmp_path / "out", limit=3, progress=False)
    SEEN.clear()
    report = run(recipe, tmp_path / "out", progress=False)
    assert_counts_add_up(report)
    caption = report["stages"]["caption"]
    assert (caption["items_in"], caption["items_out"], caption["failed"], caption["computed"]) == (6, 5, 1, 3)
    assert report["stages"]["source"]["computed"] == 3


def test_small_files_are_written_by_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every small file lands by an atomic rename: a kill mid-write leaves the old file, never half a new one."""
    renamed: set[Path] = set()
    for name in ("replace", "rename"):
        original = getattr(os, name)

        def spy(src: Any, dst: Any, *args: Any, _original: Any = original, **kwargs: Any) -> None:
            renamed.add(Path(dst).resolve())
            _original(src, dst, *args, **kwargs)

        monkeypatch.setattr(os, name, spy)
    out = tmp_path / "out"
    run(recipe_with(tmp_path, seeds=2), out, progress=False)
    small = [
        out / "recipe.yaml",
        out / "run.json",
        out / "exported.state",
        out / "stages" / "caption" / "fingerprint.json",
    ]
    for path in small:
        assert path.exists() and path.resolve() in renamed, path.name
    assert json.loads((out / "run.json").read_text())["recipe"] == "faults"


def _half_then_fail(fail_on: int, code: int) -> Any:
    """A pq.write_table that writes only half the file on call ``fail_on`` and then raises OSError(``code``)."""
    original, calls = pq.write_table, [0]

    def write_table(table: Any, where: Any, *args: Any, **kwargs: Any) -> None:
        calls[0] += 1
        if calls[0] != fail_on:
            return original(table, where, *args, **kwargs)
        buf = io.BytesIO()
        original(table, buf, *args, **kwargs)
        Path(where).write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
        raise OSError(code, os.strerror(code), str(where))

    return write_table


def stored_ids(out: Path) -> dict[str, list[str]]:
    """Input ids per stage store, reading every part file (an unreadable part fails the test)."""
    return {
        stage.name: [
            i
            for p in sorted(stage.glob("part-*.parquet"))
            for i in set(pq.read_table(p).column("input_id").to_pylist())
        ]
        for stage in (out / "stages").iterdir()
    }


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS], ids=["disk-full", "read-only"])
def test_a_store_write_failing_halfway_leaves_a_store_that_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int
) -> None:
    """The damaged-part recovery must not be what saves the run: no readable-looking half part is ever left."""
    from typer.testing import CliRunner

    from syngen.cli import app

    path = fault_stages.write_recipe(tmp_path, 6, wave_size=2)
    reference = tmp_path / "reference"
    assert CliRunner().invoke(app, ["run", str(path), "--out", str(reference), "--no-progress"]).exit_code == 0
    out, original = tmp_path / "out", pq.write_table
    monkeypatch.setattr(pq, "write_table", _half_then_fail(9, code))
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output and str(out / "stages") in result.output
    message = " ".join(result.output.split())  # rich wraps the paragraph at the terminal's width
    assert {errno.ENOSPC: "the disk is full", errno.EROFS: "the file system is read-only"}[code] in message
    for stage, ids in stored_ids(out).items():  # every part readable, no duplicates
        assert len(ids) == len(set(ids)), stage
    assert not (out / "dataset").exists()
    monkeypatch.setattr(pq, "write_table", original)
    result = CliRunner().invoke(app, ["run", str(path), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert not list(out.glob("stages/*/corrupt-*"))
    assert captions(out) == captions(reference)
