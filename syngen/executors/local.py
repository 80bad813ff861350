"""The local executor: this process runs the whole recipe, or one shard of it, into an output folder.

A whole run holds the folder's lock, resumes, and exports the dataset. A shard (``--shard K/N``, or the
environment of torchrun, accelerate or a Slurm array) holds its own lock beside the other shards, writes its
rank-local part files and its report ``run-shard-K.json``, and does not export: ``syngen export OUT`` merges all
shards once they are done. The lifecycle is :class:`~syngen.executors.base.Executor`'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

from syngen.executors.base import Executor
from syngen.recipe import Recipe
from syngen.runner import Runner
from syngen.sample import Sample
from syngen.shard import WHOLE, Shard


class LocalExecutor(Executor):
    """The shard (the whole run, or share K of N) runs here, in this process."""

    def run_shards(self, driver: Runner) -> tuple[Iterator[Sample], list[dict[str, Any]]]:
        """The driver computes its samples as the export reads them, which runs a wave behind in a thread."""
        return driver.samples(), []


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
    """Run ``recipe`` (or its ``shard``) into ``out`` in this process (see :class:`Executor`); returns the run
    report."""
    executor = LocalExecutor(
        recipe, out, fresh=fresh, limit=limit, progress=progress, shard=shard, retry_failed=retry_failed
    )
    return executor.run()
