"""The Ray executor: the shards of a run as tasks on a Ray cluster (a local one, or one started with `ray start`).

Each worker is an actor that keeps its models loaded and takes shards one after another; there are more shards
than workers, so a straggler or a lost node costs little. A failed shard is retried (on a restarted actor when
its process died) and resumes from the store. The driver holds the whole output folder's lock, shows one
progress bar for the run, and exports the dataset at the end (the lifecycle is
:class:`~syngen.executors.base.Executor`'s). Needs the ``ray`` extra.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from tqdm import tqdm

from syngen.executors.base import Executor
from syngen.recipe import Recipe, load_recipe
from syngen.runner import Runner
from syngen.sample import Sample
from syngen.shard import Shard

RETRIES = 3  # tries of a failed shard after the first
_ENV_PREFIXES = ("HF_", "SYNGEN_", "TRANSFORMERS_", "TOKENIZERS_")  # what the workers must see as the driver does


class _Worker:
    """A Ray actor: loads the recipe once, keeps a model pool across the shards it runs."""

    def __init__(self, recipe_path: str, out: str, limit: int | None):
        self.recipe = load_recipe(Path(recipe_path))
        self.out = Path(out)
        self.limit = limit
        self.pool: Any = None

    def run_shard(self, rank: int, count: int) -> dict[str, Any]:
        """Run one shard to the end (resuming what the store holds); returns its report."""
        runner = Runner(
            self.recipe, self.out, limit=self.limit, progress=False, shard=Shard(rank, count), pool=self.pool
        )
        self.pool = runner.pool
        runner.open_stores()
        for _ in runner.samples():
            pass
        return runner.report()


class RayExecutor(Executor):
    """The shards as tasks on ``workers`` Ray actors (``gpus_per_worker`` GPUs each) at ``address``: ``local``
    (start a cluster here), ``auto`` (the one ``ray start`` started) or host:port; the driver merges and exports."""

    def __init__(
        self,
        recipe: Recipe,
        out: Path,
        *,
        address: str,
        workers: int,
        gpus_per_worker: float,
        shards: int,
        **options: Any,
    ):
        super().__init__(recipe, out, **options)
        self.address, self.workers, self.gpus_per_worker, self.shards = address, workers, gpus_per_worker, shards

    def run_shards(self, driver: Runner) -> tuple[Iterator[Sample], list[dict[str, Any]]]:
        """Runs the ``shards`` shards on the actors, one progress bar for them; returns the stored samples of
        every shard and the shards' reports."""
        import ray
        from ray.util import ActorPool

        env = {key: value for key, value in os.environ.items() if key.startswith(_ENV_PREFIXES)}
        local = self.address == "local"
        ray.init(
            address=None if local else self.address,
            num_cpus=self.workers if local else None,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": env},
        )
        try:
            worker = ray.remote(_Worker).options(
                num_cpus=1, num_gpus=self.gpus_per_worker, max_restarts=-1, max_task_retries=RETRIES
            )
            recipe = str(self.recipe.path.resolve())
            pool = ActorPool([worker.remote(recipe, str(self.out), self.limit) for _ in range(self.workers)])
            reports: list[dict[str, Any]] = []
            with tqdm(total=self.shards, desc="shards", unit="shard", disable=not self.progress or None) as bar:
                for report in pool.map_unordered(
                    lambda actor, k: actor.run_shard.options(retry_exceptions=True).remote(k, self.shards),
                    list(range(self.shards)),
                ):
                    reports.append(report)
                    bar.update(1)
                    bar.set_postfix(samples=sum(r["stages"][driver.stages[0].name]["items_in"] for r in reports))
        finally:
            ray.shutdown()
        return driver.samples(compute=False), reports


def run(
    recipe: Recipe,
    out: Path,
    *,
    address: str = "local",
    workers: int = 2,
    gpus_per_worker: float = 0.0,
    shards: int = 8,
    fresh: bool = False,
    limit: int | None = None,
    progress: bool = True,
    retry_failed: bool = False,
) -> dict[str, Any]:
    """Run ``recipe`` into ``out`` as ``shards`` shards on Ray (see :class:`RayExecutor`), then export the dataset.
    Returns the run report: the stores' counts over all shards, the shards' compute figures summed."""
    import ray  # noqa: F401  (without the extra, fail before any work)

    executor = RayExecutor(
        recipe,
        out,
        address=address,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        shards=shards,
        fresh=fresh,
        limit=limit,
        progress=progress,
        retry_failed=retry_failed,
    )
    return executor.run()
