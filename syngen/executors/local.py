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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from syngen.errors import UnfinishedRun, UsageError
from syngen.executors.lock import folder_lock
from syngen.export import DATASET_FILES
from syngen.owned import check_replaceable, is_owned
from syngen.recipe import Recipe
from syngen.runner import FAILURES, Runner, card_info
from syngen.sample import Sample
from syngen.shard import WHOLE, Shard
from syngen.store import atomic_write_text, remove_stores
from syngen.threads import consume_in_thread

EXPORTED_STATE = "exported.state"  # the Runner.state() the current dataset/ was exported from


class WholeFolderOnly(UsageError):
    """``--fresh`` or ``--retry-failed`` asked of one shard: they change every shard's results."""


def run(
    recipe: Recipe,
    out: Path,
    *,
    fresh: bool = False,
    limit: int | None = None,
    progress: bool = True,
    shard: Shard = WHOLE,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Run ``recipe`` (or its ``shard``) into ``out``, resuming by default (with ``retry_failed`` the failed
    samples are computed again); a whole run exports the dataset. Returns the run report."""
    for flag, asked in (("--fresh", fresh), ("--retry-failed", retry_failed)):
        if asked and not shard.whole:
            raise WholeFolderOnly(f"{flag} changes every shard's results: run it without --shard (or with --ray)")
    with folder_lock(out, shard):
        if shard.whole:  # before any work: the export at the end must be able to replace it
            check_replaceable(out / "dataset", DATASET_FILES)
        _pin_gpu(recipe)
        if fresh:
            clear(out)
        atomic_write_text(out / "recipe.yaml", recipe.text)
        runner = Runner(recipe, out, limit=limit, progress=progress, shard=shard)
        runner.preflight()
        runner.open_stores()
        if retry_failed:
            runner.retry_failed()
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


def export(recipe: Recipe, out: Path, *, partial: bool = False, repo_id: str | None = None) -> tuple[Path, bool]:
    """Rewrite ``out/dataset`` from the stores of every shard, under the whole folder's lock (no model runs);
    returns the folder and whether it is partial. A run with samples not computed yet raises
    :class:`UnfinishedRun` (saying how many are complete, the dataset left as it was) unless ``partial``: then
    they are left out and the card says so. The card's loading code names ``repo_id``. Raises
    :class:`~syngen.store.StaleStore` when the stores were made under other settings than ``recipe``'s."""
    with folder_lock(out):
        runner = Runner(recipe, out, progress=False)
        runner.open_stores(drop_stale=False)
        info = card_info(runner.recipe, runner.summary, repo_id)
        return _export(runner, _complete(runner, info, partial), info), info.partial


def _export(runner: Runner, samples: Iterator[Sample] | None = None, info: Any = None) -> Path:
    """Stream the runner's samples (or ``samples``, stored ones) into the dataset. Computing them, the dataset
    is complete: record the state it was exported from, so that a rerun with nothing new does not export again."""
    from syngen.export import export_dataset

    state_file = runner.out / EXPORTED_STATE
    state_file.unlink(missing_ok=True)
    recipe = runner.recipe
    info = info or card_info(recipe, runner.summary)
    # the export of a wave (drawing, encoding, writing shards) runs in a worker thread while the next wave's
    # stages run here, at most one wave behind (the runner keeps that wave's images decoded for it)
    path = consume_in_thread(
        lambda samples: export_dataset(
            samples, runner.out, info, stages=recipe.stages, embed_images=recipe.top.output.embed_images
        ),
        runner.samples() if samples is None else samples,
        maxsize=recipe.top.runtime.wave_size,
    )
    if samples is None:
        atomic_write_text(state_file, runner.state())
    return path


def _complete(runner: Runner, info: Any, partial: bool) -> Iterator[Sample]:
    """The stored final samples. Some not computed yet: sets ``info.partial``, or without ``partial`` stops at
    once (before the new dataset folder is swapped in) with :class:`UnfinishedRun`, after counting the rest."""
    samples, count = runner.samples(compute=False), 0
    for sample in samples:
        if runner.unfinished() and not partial:
            count += 1 + sum(1 for _ in samples)  # the rest is only counted
            break
        count += 1
        yield sample
    unfinished = runner.unfinished()
    if unfinished and not partial:
        stage, missing = unfinished
        out, recipe = runner.out, runner.recipe.path
        raise UnfinishedRun(
            f"{out}: the run is unfinished: {count} samples are complete and {missing} inputs of the {stage} stage "
            f"are not computed yet. Finish it with `syngen run {recipe} --out {out}`, or export the complete "
            "samples with --partial (the card then says the dataset is partial). The dataset folder was not changed."
        )
    info.partial = unfinished is not None


def _pin_gpu(recipe: Recipe) -> None:
    """Under torchrun or accelerate on CUDA, each process uses the GPU its ``LOCAL_RANK`` names."""
    local_rank = os.environ.get("LOCAL_RANK")
    if local_rank is not None and recipe.context().device == "cuda":
        import torch

        torch.cuda.set_device(int(local_rank))


def clear(out: Path) -> None:
    """Drop every earlier result syngen wrote in ``out``: the stores, the dataset (when syngen's) and the reports.
    Files syngen did not write stay, and so does the ``.syngen`` marker."""
    remove_stores(out)
    if is_owned(out / "dataset"):
        shutil.rmtree(out / "dataset")
    reports = [out / name for name in ("run.json", EXPORTED_STATE, FAILURES)]
    for path in [*reports, *out.glob("run-shard-*.json"), *out.glob("failures-shard-*.jsonl")]:
        path.unlink(missing_ok=True)


def recipe_path(out: Path) -> Path | None:
    """The recipe a run (or any shard's run) in ``out`` was made from, per its report; None when there is none."""
    for report in [out / "run.json", *sorted(out.glob("run-shard-*.json"))]:
        if report.exists():
            return Path(json.loads(report.read_text())["recipe_path"])
    return None
