"""The Ray executor: the shards of a run as tasks on a Ray cluster (a local one, or one started with `ray start`).

Each worker is an actor that keeps its models loaded and takes shards one after another; there are more shards
than workers, so a straggler or a lost node costs little. A failed shard is retried (on a restarted actor when
its process died) and resumes from the store. The driver holds the whole output folder's lock, shows one
progress bar for the run, and exports the dataset at the end. Needs the ``ray`` extra.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from tqdm import tqdm

from syngen.executors.local import EXPORTED_STATE, clear
from syngen.executors.lock import folder_lock
from syngen.recipe import Recipe, load_recipe
from syngen.runner import Runner, card_info
from syngen.shard import Shard
from syngen.store import atomic_write_text

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
    """Run ``recipe`` into ``out`` as ``shards`` shards on ``workers`` Ray actors, then export the dataset.
    ``address``: ``local`` (start a cluster here), ``auto`` (the one ``ray start`` started) or host:port.
    Returns the run report: the stores' counts over all shards, the shards' compute figures summed."""
    import ray
    from ray.util import ActorPool

    from syngen.export import export_dataset

    started = time.perf_counter()
    with folder_lock(out):
        if fresh:
            clear(out)
        atomic_write_text(out / "recipe.yaml", recipe.text)
        driver = Runner(recipe, out, limit=limit, progress=False)
        driver.preflight()  # fail before starting anything; tiny twins are built once, here
        driver.open_stores()  # a stale stage is dropped once, before the shards start
        if retry_failed:
            driver.retry_failed()
        env = {key: value for key, value in os.environ.items() if key.startswith(_ENV_PREFIXES)}
        local = address == "local"
        ray.init(
            address=None if local else address,
            num_cpus=workers if local else None,
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": env},
        )
        try:
            worker = ray.remote(_Worker).options(
                num_cpus=1, num_gpus=gpus_per_worker, max_restarts=-1, max_task_retries=RETRIES
            )
            actors = [worker.remote(str(recipe.path.resolve()), str(out), limit) for _ in range(workers)]
            pool = ActorPool(actors)
            reports = []
            with tqdm(total=shards, desc="shards", unit="shard", disable=not progress or None) as bar:
                for report in pool.map_unordered(
                    lambda actor, k: actor.run_shard.options(retry_exceptions=True).remote(k, shards),
                    list(range(shards)),
                ):
                    reports.append(report)
                    bar.update(1)
                    bar.set_postfix(samples=sum(r["stages"][driver.stages[0].name]["items_in"] for r in reports))
        finally:
            ray.shutdown()
        export_dataset(
            driver.samples(compute=False),
            out,
            card_info(recipe, driver.summary),
            stages=recipe.stages,
            embed_images=recipe.top.output.embed_images,
        )
        atomic_write_text(out / EXPORTED_STATE, driver.state())
        report = driver.report() | {"total_s": round(time.perf_counter() - started, 3), "shards": shards}
        for name, stage in report["stages"].items():
            for key in ("computed", "wall_s", "load_s", "model_s"):
                stage[key] = round(sum(r["stages"][name][key] for r in reports), 3)
            stage["peak_mem_mb"] = max(r["stages"][name]["peak_mem_mb"] for r in reports)
            stage["items_per_s"] = round(stage["computed"] / stage["wall_s"], 3) if stage["wall_s"] else 0.0
        atomic_write_text(out / "run.json", json.dumps(report, indent=2))
        return report
