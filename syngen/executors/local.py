"""The local executor: one process runs the whole recipe, or one shard of it, into an output folder.

A whole run holds the folder's lock, resumes, and exports the dataset. A shard (``--shard K/N``, or the
environment of torchrun, accelerate or a Slurm array) holds its own lock beside the other shards, writes its
rank-local part files and its report ``run-shard-K.json``, and does not export: ``syngen export OUT`` merges all
shards once they are done.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

from syngen.executors.lock import folder_lock
from syngen.executors.shard import WHOLE, Shard
from syngen.recipe import Recipe
from syngen.runner import Runner, card_info
from syngen.store import atomic_write_text

EXPORTED_STATE = "exported.state"  # the Runner.state() the current dataset/ was exported from


class ShardedFresh(ValueError):
    """``--fresh`` asked of one shard: it would drop the other shards' results."""


def run(
    recipe: Recipe,
    out: Path,
    *,
    fresh: bool = False,
    limit: int | None = None,
    progress: bool = True,
    shard: Shard = WHOLE,
) -> dict[str, Any]:
    """Run ``recipe`` (or its ``shard``) into ``out``, resuming by default; a whole run exports the dataset.
    Returns the run report."""
    if fresh and not shard.whole:
        raise ShardedFresh("--fresh drops every shard's results: run `syngen run --fresh --limit 1` alone first")
    with folder_lock(out, shard):
        _pin_gpu(recipe)
        if fresh:
            clear(out)
        atomic_write_text(out / "recipe.yaml", recipe.text)
        runner = Runner(recipe, out, limit=limit, progress=progress, shard=shard)
        runner.preflight()
        runner.open_stores()
        if not shard.whole:
            for _ in runner.samples():
                pass
            report = runner.report()
            atomic_write_text(out / f"run-shard-{shard.rank}.json", json.dumps(report, indent=2))
            return report
        state_file = out / EXPORTED_STATE
        if (out / "dataset").is_dir() and state_file.exists() and state_file.read_text() == runner.state():
            for _ in runner.samples():  # nothing to compute or export: read the stores for the report
                pass
        else:
            _export(runner)
        report = runner.report()
        atomic_write_text(out / "run.json", json.dumps(report, indent=2))
        return report


def export(recipe: Recipe, out: Path) -> Path:
    """Rewrite ``out/dataset`` from the stores of every shard, under the whole folder's lock (no model runs;
    samples not computed yet are left out). Raises :class:`~syngen.store.StaleStore` when the stores were made
    under other settings than ``recipe``'s."""
    with folder_lock(out):
        runner = Runner(recipe, out, progress=False)
        runner.open_stores(drop_stale=False)
        return _export(runner, compute=False)


def _export(runner: Runner, compute: bool = True) -> Path:
    """Stream the runner's samples into the dataset. Computing them too, the dataset is complete: record the
    state it was exported from, so that a rerun with nothing new does not export again."""
    from syngen.export import export_dataset

    state_file = runner.out / EXPORTED_STATE
    state_file.unlink(missing_ok=True)
    path = export_dataset(runner.samples(compute), runner.out, card_info(runner.recipe, runner.summary))
    if compute:
        atomic_write_text(state_file, runner.state())
    return path


def _pin_gpu(recipe: Recipe) -> None:
    """Under torchrun or accelerate on CUDA, each process uses the GPU its ``LOCAL_RANK`` names."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and recipe.context().device == "cuda":
        import torch

        torch.cuda.set_device(int(local_rank))


def clear(out: Path) -> None:
    """Drop every earlier result in ``out`` (stores, dataset, reports)."""
    for path in [out / "stages", out / "dataset", out / "run.json", out / EXPORTED_STATE, *out.glob("run-shard-*")]:
        shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


def recipe_path(out: Path) -> Path | None:
    """The recipe a run (or any shard's run) in ``out`` was made from, per its report; None when there is none."""
    for report in [out / "run.json", *sorted(out.glob("run-shard-*.json"))]:
        if report.exists():
            return Path(json.loads(report.read_text())["recipe_path"])
    return None
