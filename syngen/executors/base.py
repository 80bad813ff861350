"""The executors' one lifecycle: prepare the output folder, run the shards, merge them, export the dataset.

An executor subclass says only how the shards run (:meth:`Executor.run_shards`): in this process
(:class:`~syngen.executors.local.LocalExecutor`: the whole run, or one shard of N) or as tasks on a Ray cluster
(:class:`~syngen.executors.ray.RayExecutor`). Everything else is here, once: the folder's lock, ``--fresh``,
``--retry-failed``, the checks before any work, the export (skipped when nothing changed since the last one), the
merged report ``run.json`` (a shard's ``run-shard-K.json``), and ``syngen export`` (merge and export, no shards).
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
SUMMED = ("computed", "wall_s", "load_s", "model_s")  # a stage's compute figures: over the shards, their sum

__all__ = ["EXPORTED_STATE", "Executor", "WholeFolderOnly", "clear", "export", "recipe_path"]


class WholeFolderOnly(UsageError):
    """``--fresh`` or ``--retry-failed`` asked of one shard: they change every shard's results."""


class Executor:
    """Runs ``recipe`` (or its ``shard``) into ``out``, resuming by default: ``fresh`` starts over, with
    ``retry_failed`` the failed samples are computed again, ``limit`` caps the seed items. A whole run exports
    the dataset; one shard of several leaves that to ``syngen export``. Subclasses override :meth:`run_shards`."""

    def __init__(
        self,
        recipe: Recipe,
        out: Path,
        *,
        fresh: bool = False,
        limit: int | None = None,
        progress: bool = True,
        retry_failed: bool = False,
        shard: Shard = WHOLE,
    ):
        for flag, asked in (("--fresh", fresh), ("--retry-failed", retry_failed)):
            if asked and not shard.whole:
                raise WholeFolderOnly(f"{flag} changes every shard's results: run it without --shard (or with --ray)")
        self.recipe, self.out, self.shard = recipe, out, shard
        self.fresh, self.limit, self.progress, self.retry_failed = fresh, limit, progress, retry_failed

    def run(self) -> dict[str, Any]:
        """Prepare, run the shards, merge, export; returns the run report (also written to ``run.json``, or a
        shard's ``run-shard-K.json``)."""
        with folder_lock(self.out, self.shard):
            driver = self.prepare()
            samples, shard_reports = self.run_shards(driver)
            self.export(driver, samples)
            report = merge(driver.report(), shard_reports)
            name = "run.json" if self.shard.whole else f"run-shard-{self.shard.rank}.json"
            atomic_write_text(self.out / name, json.dumps(report, indent=2))
            return report

    def prepare(self) -> Runner:
        """Checks and clears the folder as asked, resolves every model and opens the stores (a stale stage is
        dropped here, once, before any shard starts); returns the driver: the runner of this process's part."""
        if self.shard.whole:  # before any work: the export at the end must be able to replace it
            check_replaceable(self.out / "dataset", DATASET_FILES)
        _pin_gpu(self.recipe)
        if self.fresh:
            clear(self.out)
        atomic_write_text(self.out / "recipe.yaml", self.recipe.text)
        driver = Runner(self.recipe, self.out, limit=self.limit, progress=self.progress, shard=self.shard)
        driver.preflight()  # fail before computing anything; tiny twins are built once, here
        driver.open_stores()
        if self.retry_failed:
            driver.retry_failed()
        return driver

    def run_shards(self, driver: Runner) -> tuple[Iterator[Sample], list[dict[str, Any]]]:
        """Runs the shards: returns the final samples of ``driver``'s part (computed as they are read, or read
        from the stores the shards wrote) and the reports of shards run in other processes (none when this
        process computes the samples as they are read)."""
        raise NotImplementedError

    def export(self, driver: Runner, samples: Iterator[Sample]) -> None:
        """Streams ``samples`` into the dataset; when the dataset is already made from what ``driver`` holds, or
        this process runs one shard of several (``syngen export`` merges them), only reads them through."""
        state_file = self.out / EXPORTED_STATE
        if self.shard.whole and not (
            (self.out / "dataset").is_dir() and state_file.exists() and state_file.read_text() == driver.state()
        ):
            _export(driver, samples, complete=True)
            return
        for _ in samples:  # the report's figures
            pass


def merge(report: dict[str, Any], shard_reports: list[dict[str, Any]]) -> dict[str, Any]:
    """The driver's ``report`` (the stores' counts over every shard) with the compute figures of the shards run
    in other processes summed in; unchanged when there are none."""
    if not shard_reports:
        return report
    report["shards"] = len(shard_reports)
    for name, stage in report["stages"].items():
        for key in SUMMED:
            stage[key] = round(sum(r["stages"][name][key] for r in shard_reports), 3)
        stage["peak_mem_mb"] = max(r["stages"][name]["peak_mem_mb"] for r in shard_reports)
        stage["items_per_s"] = round(stage["computed"] / stage["wall_s"], 3) if stage["wall_s"] else 0.0
    return report


def export(recipe: Recipe, out: Path, *, partial: bool = False, repo_id: str | None = None) -> tuple[Path, bool]:
    """``syngen export``: merge every shard's stores and export, under the whole folder's lock (no model runs);
    returns the dataset folder and whether it is partial. A run with samples not computed yet raises
    :class:`UnfinishedRun` (saying how many are complete, the dataset left as it was) unless ``partial``: then
    they are left out and the card says so. The card's loading code names ``repo_id``. Raises
    :class:`~syngen.store.StaleStore` when the stores were made under other settings than ``recipe``'s."""
    with folder_lock(out):
        runner = Runner(recipe, out, progress=False)
        runner.open_stores(drop_stale=False)
        info = card_info(runner.recipe, runner.summary, repo_id)
        return _export(runner, _complete(runner, info, partial), info), info.partial


def _export(runner: Runner, samples: Iterator[Sample], info: Any = None, complete: bool = False) -> Path:
    """Streams ``samples`` (the runner's) into the dataset. A ``complete`` dataset records the state it was
    exported from, so that a rerun with nothing new does not export again."""
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
        samples,
        maxsize=recipe.top.runtime.wave_size,
    )
    if complete:
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
