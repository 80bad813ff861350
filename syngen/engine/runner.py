"""A run of a recipe's stages over the seed items: the stages and their stores, the wave scheduler
(:mod:`~syngen.engine.waves`), the per-stage executor (:mod:`~syngen.engine.stage`), the run's resources
(:mod:`~syngen.engine.context`), ``failures.jsonl`` and the run report.

Models come from a :class:`~syngen.models.pool.ModelPool`: loaded once per run and kept resident across waves
while they fit ``runtime.memory_budget``, the least recently used freed when the next one does not fit. Samples
already in a stage's store are read back instead of computed. Results stream into the dataset export as waves
complete.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any, TextIO

from tqdm import tqdm

from syngen import cpus
from syngen.engine.context import RunContext
from syngen.engine.report import StageReport, skipped_records
from syngen.engine.stage import StageExecutor
from syngen.engine.waves import in_flight, split_model_free, waves
from syngen.models.pool import ModelPool, device_memory_bytes
from syngen.recipe import Recipe
from syngen.sample import Sample
from syngen.shard import WHOLE, Shard
from syngen.stages import stage_class
from syngen.stages.base import SourceStage, Stage
from syngen.store import StageStore, to_json
from syngen.threads import on_gpu

FAILURES = "failures.jsonl"  # every recorded failure with its seed item, rewritten whenever the samples are read
log = logging.getLogger(__name__)

__all__ = ["FAILURES", "Runner"]


class Runner:
    """One run of a recipe (or of one shard of it) into an output folder. Use :meth:`samples` to stream the final
    samples. Which process runs which shard is the executors' business (:mod:`syngen.executors`); a ``pool``
    passed in (an executor's worker running shard after shard) keeps its models loaded after the run."""

    def __init__(
        self,
        recipe: Recipe,
        out: Path,
        *,
        limit: int | None = None,
        progress: bool = True,
        shard: Shard = WHOLE,
        pool: ModelPool | None = None,
    ):
        self.recipe = recipe
        self.out = out
        self.limit = limit
        self.progress = progress
        self.shard = shard
        self.failures_file = FAILURES if shard.whole else f"failures-shard-{shard.rank}.jsonl"
        self.ctx = recipe.context()
        gpu = on_gpu(self.ctx.device)
        self.context = RunContext.open(cpus.plan(recipe.top.runtime.cpu_threads, gpu, cpus.local_processes()))
        self.stages: list[Stage[Any, Any]] = [stage_class(name)(cfg, self.ctx) for name, cfg in recipe.stages.items()]
        if not isinstance(self.stages[0], SourceStage):
            raise TypeError(f"the first stage must be a source stage, not {self.stages[0].name}")
        self.source: SourceStage[Any] = self.stages[0]
        self.reports = {stage.name: StageReport() for stage in self.stages}
        self.stores: dict[str, StageStore] = {}
        self._chain = ""
        self._own_pool = pool is None
        if pool is None:
            budget = recipe.top.runtime.memory_budget
            pool = ModelPool(
                self.ctx.device,
                self.ctx.dtype,
                device_memory_bytes(self.ctx.device) if budget is None else int(budget * 2**30),
                cache_limit=recipe.top.runtime.wave_size,
            )
        self.pool = pool
        self._bars: dict[str, tqdm] = {}
        self.started = time.perf_counter()
        self.preflight_s = 0.0
        self.summary: dict[str, Any] = {}  # the run report, filled in when :meth:`samples` is exhausted
        self._failures: TextIO  # where :meth:`samples` writes the failures it meets (the next failures.jsonl)
        self._failures_lock = threading.Lock()  # written from the worker threads too (overlap)
        self.executor = StageExecutor(
            self.pool,
            self.stores,
            self.reports,
            self.context,
            self._failure,
            self._bar,
            {stage.name: stage.config.batch_size for stage in self.stages},
        )

    def preflight(self) -> None:
        """Resolve every model before any compute (tiny twins are built here)."""
        start = time.perf_counter()
        for stage in self.stages:
            stage.preflight()
        self.preflight_s = time.perf_counter() - start

    def state(self) -> str:
        """A digest of what the dataset folder is made from: the recipe's text (the card and ``recipe.yaml`` show
        it), the seed item ids (all shards'), the stage fingerprints and the stores' data files (name, size and time:
        a file rewritten in place, as ``--retry-failed`` does, counts as changed). Equal digests, equal exports."""
        digest = hashlib.sha1(self._chain.encode())
        digest.update(self.recipe.text.encode())
        if self.recipe.top.output.embed_images:  # the dataset's layout
            digest.update(b"embed_images")
        for item in self.source.items(self.limit):
            digest.update(item["id"].encode())
        for path in sorted(p for store in self.stores.values() for p in store.data_files()):
            stat = path.stat()
            digest.update(f"{path.name} {stat.st_size} {stat.st_mtime_ns}".encode())
        return digest.hexdigest()

    def open_stores(self, drop_stale: bool = True) -> None:
        """Open each stage's store under its fingerprint chain, dropping results made under other settings
        (with ``drop_stale=False``, raises :class:`~syngen.store.StaleStore` instead)."""
        chain = ""
        for stage in self.stages:
            chain = hashlib.sha1((chain + to_json(stage.fingerprint())).encode()).hexdigest()
            store = StageStore(
                self.out, stage.name, self.shard.rank, exclusive=self.shard.whole, writer=self.context.writer
            )
            store.open(chain, drop_stale=drop_stale)
            self.stores[stage.name] = store
        self._chain = chain

    def samples(self, compute: bool = True) -> Iterator[Sample]:
        """The final samples, wave by wave; with ``compute=False`` only what the stores already hold.

        Every failure met on the way (computed now or stored earlier) goes to ``OUT/failures.jsonl`` (a shard's to
        ``OUT/failures-shard-K.jsonl``), which is replaced when the stream is exhausted. The run's resources are
        bound while the stream runs and closed when it ends."""
        items = (item for item in self.source.items(self.limit) if self.shard.owns(item["id"]))
        failures = self.out / f".tmp-{self.failures_file}"
        try:
            with self.context.bound(), failures.open("w", encoding="utf-8") as self._failures:
                yield from self._waves(items, compute)
                if self.shard.whole:  # every shard sees them: the whole folder's file lists them once
                    kind = getattr(self.source.config, "kind", None)
                    skipped = skipped_records(self.source.name, kind, getattr(self.source, "skipped", {}))
                    self._failures.writelines(to_json(record) + "\n" for record in skipped)
                if compute:  # the stores are independent: compacted side by side (pyarrow leaves the GIL)
                    list(self.context.pool.map(StageStore.compact, self.stores.values()))
            os.replace(failures, self.out / self.failures_file)
            self.summary.update(self.report())
        finally:
            failures.unlink(missing_ok=True)
            if self._own_pool:
                self.pool.close()
            for bar in self._bars.values():
                bar.close()

    def _waves(self, items: Iterator[Sample], compute: bool) -> Iterator[Sample]:
        """The final samples of ``items`` (see :func:`syngen.engine.waves.waves`)."""
        empty: list[Stage[Any, Any]] = []
        parts = split_model_free(self.stages) if self._overlap() else (empty, self.stages, empty)
        self.executor.in_flight = in_flight(parts[0], parts[2])

        def run(stages: list[Stage[Any, Any]], wave: list[Sample]) -> list[Sample]:
            for stage in stages:
                wave = self.executor.run(stage, wave, compute)
            return wave

        yield from waves(items, self.recipe.top.runtime.wave_size, parts, run, self.executor.stop)

    def _overlap(self) -> bool:
        setting = self.recipe.top.runtime.overlap
        return setting == "on" or (setting == "auto" and on_gpu(self.ctx.device))

    def _failure(self, line: str) -> None:
        with self._failures_lock:
            self._failures.write(line + "\n")

    def _bar(self, stage: Stage[Any, Any]) -> tqdm:
        if stage.name not in self._bars:
            self._bars[stage.name] = tqdm(
                desc=f"{stage.name:>10}", unit="it", disable=not self.progress or None, leave=True, file=sys.stderr
            )
        return self._bars[stage.name]

    def retry_failed(self) -> int:
        """Drops the stored failures of every stage (open the stores first), so the next :meth:`samples` computes
        those samples again and nothing else; returns how many were dropped."""
        dropped = {name: store.drop_failed() for name, store in self.stores.items()}
        for name, n in dropped.items():
            if n:
                log.info("retrying %d failed sample(s) of stage %s", n, name)
        return sum(dropped.values())

    def report(self) -> dict[str, Any]:
        """The run report as written to ``run.json``."""
        stages = {}
        for name, rep in self.reports.items():
            stages[name] = asdict(rep) | {"failures": dict(rep.failures), "stats": dict(rep.stats)}
            stages[name] = {k: round(v, 3) if isinstance(v, float) else v for k, v in stages[name].items()}
        skipped = getattr(self.source, "skipped", {})
        return {
            "recipe": self.recipe.name,
            "recipe_path": str(self.recipe.path.resolve()),
            "device": self.ctx.device,
            "dtype": self.ctx.dtype,
            "total_s": round(time.perf_counter() - self.started, 3),
            "preflight_s": round(self.preflight_s, 3),
            "stages": stages,
            "skipped": skipped,  # seed files that are not images, with the reason
            "model_loads": dict(self.pool.loads),
        }

    def unfinished(self) -> tuple[str, int] | None:
        """After ``samples(compute=False)``: the first stage with inputs not in its store and how many, or None
        when every sample went through every stage."""
        return next(((name, r.not_computed) for name, r in self.reports.items() if r.not_computed), None)
