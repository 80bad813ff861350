"""Runs a recipe's stages over the seed items: waves, batches, failures, resume, the run report.

Stage-major in waves: for each wave of ``runtime.wave_size`` seed items every stage runs over the whole wave
before the next stage starts; with ``runtime.overlap`` the model-free stages at either end run a wave ahead or
behind in worker threads. Models come from a :class:`~syngen.models.pool.ModelPool`: loaded once per run
and kept resident across waves while they fit ``runtime.memory_budget``, the least recently used freed when
the next one does not fit. Samples already in a stage's store are read back instead
of computed. A batch that raises is retried sample by sample so the bad sample alone is recorded as a failure;
on CUDA out-of-memory the batch size is halved. A batch whose images are still encoding (handed over as futures)
is stored once the stage's next batch has been called, so the encoding overlaps that call. Results stream into the
dataset export as waves complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import resource
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any, TextIO, cast

from tqdm import tqdm

from syngen import cpus
from syngen.models.loading import backend_for
from syngen.models.pool import ModelPool, device_memory_bytes
from syngen.models.roles import Model
from syngen.recipe import Recipe
from syngen.sample import DECODED, Failure, Sample
from syngen.shard import WHOLE, Shard
from syngen.stages import stage_class
from syngen.stages.base import ModelStageConfig, Outcome, Result, SourceStage, Stage, Update
from syngen.store import Row, StageStore, to_json
from syngen.threads import POOL, apply_threads, on_gpu

FAILURES = "failures.jsonl"  # every recorded failure with its seed item, rewritten whenever the samples are read
log = logging.getLogger(__name__)

__all__ = ["FAILURES", "Runner", "StageReport", "card_info"]


@dataclass
class StageReport:
    """Per-stage figures of a run; in = out + failed, counting resumed samples too."""

    items_in: int = 0
    items_out: int = 0
    failed: int = 0
    emitted: int = 0
    computed: int = 0
    wall_s: float = 0.0
    load_s: float = 0.0
    loads: int = 0
    model_s: float = 0.0
    items_per_s: float = 0.0
    peak_mem_mb: float = 0.0
    failures: Counter = field(default_factory=Counter)
    failure_examples: dict[str, str] = field(default_factory=dict)  # failure kind -> its first message
    stats: Counter = field(default_factory=Counter)
    not_computed: int = 0  # inputs left out because they are not in the store yet (export of an unfinished run)


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
        apply_threads(cpus.plan(recipe.top.runtime.cpu_threads, on_gpu(self.ctx.device), cpus.local_processes()))
        self.stages: list[Stage[Any, Any]] = [stage_class(name)(cfg, self.ctx) for name, cfg in recipe.stages.items()]
        if not isinstance(self.stages[0], SourceStage):
            raise TypeError(f"the first stage must be a source stage, not {self.stages[0].name}")
        self.source: SourceStage[Any] = self.stages[0]
        self.reports = {stage.name: StageReport() for stage in self.stages}
        self.stores: dict[str, StageStore] = {}
        self._chain = ""
        self.batch_size = {stage.name: stage.config.batch_size for stage in self.stages}
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
        self._in_flight = 1  # waves being computed at once (overlap)
        self._stop = threading.Event()  # set when the run stops early: the worker threads stop too

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
            store = StageStore(self.out, stage.name, self.shard.rank, exclusive=self.shard.whole)
            store.open(chain, drop_stale=drop_stale)
            self.stores[stage.name] = store
        self._chain = chain

    def samples(self, compute: bool = True) -> Iterator[Sample]:
        """The final samples, wave by wave; with ``compute=False`` only what the stores already hold.

        Every failure met on the way (computed now or stored earlier) goes to ``OUT/failures.jsonl`` (a shard's to
        ``OUT/failures-shard-K.jsonl``), which is replaced when the stream is exhausted."""
        items = (item for item in self.source.items(self.limit) if self.shard.owns(item["id"]))
        failures = self.out / f".tmp-{self.failures_file}"
        try:
            with failures.open("w", encoding="utf-8") as self._failures:
                yield from self._waves(items, compute)
                if self.shard.whole:  # every shard sees them: the whole folder's file lists them once
                    self._failures.writelines(to_json(record) + "\n" for record in self._skipped_records())
            if compute:  # the stores are independent: compacted side by side (pyarrow leaves the GIL)
                list(POOL.map(StageStore.compact, self.stores.values()))
            os.replace(failures, self.out / self.failures_file)
            self.summary.update(self.report())
        finally:
            failures.unlink(missing_ok=True)
            if self._own_pool:
                self.pool.close()
            for bar in self._bars.values():
                bar.close()

    def _skipped_records(self) -> Iterator[dict[str, Any]]:
        """A ``failures.jsonl`` line for each seed entry the source did not use (not an image, not a regular file,
        a dangling or looping link), with the reason."""
        kind = getattr(self.source.config, "kind", None)
        for item, reason in getattr(self.source, "skipped", {}).items():
            yield {
                "stage": self.source.name,
                "item": item,
                "source": kind,
                "id": None,
                "kind": "skipped",
                "message": reason,
                "detail": "",
            }

    def _waves(self, items: Iterator[Sample], compute: bool) -> Iterator[Sample]:
        """The final samples of ``items``, wave by wave. With ``runtime.overlap``, the model-free stages before the
        first model stage (the source) run over wave k + 1 in one worker thread and those after the last (views)
        over wave k - 1 in another, while the model stages run here over wave k; leaving early (Ctrl-C, an error)
        stops the workers after their current batch."""
        wave_size = self.recipe.top.runtime.wave_size
        lead, middle, tail = split_model_free(self.stages) if self._overlap() else ([], self.stages, [])
        self._in_flight = 1 + bool(lead) + bool(tail)  # waves at once: each keeps its decoded images
        self._stop.clear()
        with ThreadPoolExecutor(1, "syngen-ahead") as ahead, ThreadPoolExecutor(1, "syngen-behind") as behind:

            def lead_next_wave() -> Future[list[Sample]] | None:
                wave = list(islice(items, wave_size))
                return ahead.submit(self._run_stages, lead, wave, compute) if wave else None

            try:
                coming, finishing = lead_next_wave(), None
                while coming is not None:
                    wave, coming = coming.result(), lead_next_wave()
                    wave = self._run_stages(middle, wave, compute)
                    if not tail:  # nothing runs behind: the wave is final now
                        yield from wave
                        continue
                    if finishing is not None:
                        yield from finishing.result()
                    finishing = behind.submit(self._run_stages, tail, wave, compute)
                if finishing is not None:
                    yield from finishing.result()
            finally:
                self._stop.set()

    def _overlap(self) -> bool:
        setting = self.recipe.top.runtime.overlap
        return setting == "on" or (setting == "auto" and on_gpu(self.ctx.device))

    def retry_failed(self) -> int:
        """Drops the stored failures of every stage (open the stores first), so the next :meth:`samples` computes
        those samples again and nothing else; returns how many were dropped."""
        dropped = {name: store.drop_failed() for name, store in self.stores.items()}
        for name, n in dropped.items():
            if n:
                log.info("retrying %d failed sample(s) of stage %s", n, name)
        return sum(dropped.values())

    def _bar(self, stage: Stage[Any, Any]) -> tqdm:
        if stage.name not in self._bars:
            self._bars[stage.name] = tqdm(
                desc=f"{stage.name:>10}", unit="it", disable=not self.progress or None, leave=True, file=sys.stderr
            )
        return self._bars[stage.name]

    def _run_stages(self, stages: list[Stage[Any, Any]], wave: list[Sample], compute: bool) -> list[Sample]:
        for stage in stages:
            wave = self._run_stage(stage, wave, compute)
        return wave

    def _run_stage(self, stage: Stage[Any, Any], wave: list[Sample], compute: bool) -> list[Sample]:
        start = time.perf_counter()
        report = self.reports[stage.name]
        store = self.stores[stage.name]
        done = store.index()
        stored = [s["id"] for s in wave if s["id"] in done]
        pending = [s for s in wave if s["id"] not in done]
        rows: dict[str, list[Row]] = {}
        if pending and compute:
            # the wave as it is now (after a fan-out), the others in flight, the one the export is drawing (it runs
            # a wave behind, see executors/base.py) and the seed images a synthesis replaced
            DECODED.fit(len(wave) * (self._in_flight + 2))
            if stage.role is not None:  # a model-free stage runs beside the model stages: it leaves their peak alone
                _reset_peak_memory()
            loads = self.pool.loads.total()
            model, load_s = self.pool.get(
                stage.model_ref(),
                stage.default_backend,
                stage.model_dtype(),
                stage.model_options(),
                compile=getattr(stage.config, "compile", False),
            )
            if hasattr(model, "cache_limit"):  # e.g. SAM's embeddings: the whole wave after fan-out
                model.cache_limit = max(model.cache_limit, len(wave))
            ref = stage.model_ref()
            if ref is not None and self.pool.loads.total() > loads:
                backend = backend_for(ref, stage.default_backend)
                log.info("%s: loaded %s (%s) in %.1f s", stage.name, ref.id, backend, load_s)
            report.load_s += load_s
            report.loads += self.pool.loads.total() - loads
            model_s0 = getattr(model, "model_seconds", 0.0)
            bar = self._bar(stage)
            queue = list(pending)
            held: list[tuple[Sample, Result]] = []  # a batch still finishing or encoding (see stages.base.Result)

            def keep(results: list[tuple[Sample, Result]]) -> None:
                batch_rows = [row for sample, result in results for row in _rows(sample, result)]
                store.write(batch_rows, wait=False)  # the file is written while the next batch runs
                for row in batch_rows:
                    rows.setdefault(row["input_id"], []).append(row)

            try:
                while queue:
                    if self._stop.is_set():
                        raise Stopped(f"{stage.name}: the run stopped")
                    batch, queue = queue[: self.batch_size[stage.name]], queue[self.batch_size[stage.name] :]
                    results = list(zip(batch, self._process(stage, batch, model), strict=True))
                    before, held = held, []
                    keep(before)
                    if any(_unfinished(result) for _, result in results):
                        held = results
                    else:
                        keep(results)
                    bar.update(len(batch))
            finally:
                keep(held)  # also when the run stops or fails: what was made is kept
            report.model_s += getattr(model, "model_seconds", 0.0) - model_s0
            report.computed += len(pending)
            if stage.role is not None:
                report.peak_mem_mb = max(report.peak_mem_mb, _peak_memory_mb())
        rows |= store.read(stored)
        merged = []
        for sample in wave:
            sample_rows = rows.get(sample["id"])
            if sample_rows is None:  # not computed (compute=False): not part of the result
                report.not_computed += 1
                continue
            report.items_in += 1
            outputs = _merge(sample, sample_rows, report)
            for row in sample_rows:
                if row["status"] == "failed":
                    record = to_json(failure_record(stage.name, sample, json.loads(row["data"])))
                    with self._failures_lock:
                        self._failures.write(record + "\n")
            report.items_out += bool(outputs)
            report.emitted += len(outputs)
            merged.extend(outputs)
        report.wall_s += time.perf_counter() - start
        report.items_per_s = report.computed / report.wall_s if report.wall_s else 0.0
        return merged

    def _process(self, stage: Stage[Any, Any], batch: list[Sample], model: Model | None) -> list[Result]:
        """Results for a batch; a failing batch is split to isolate the failing samples."""
        try:
            results = stage.process(batch, model)
            if len(results) != len(batch):
                raise RuntimeError(f"{stage.name} returned {len(results)} results for {len(batch)} samples")
            return results
        except Exception as err:
            if _is_oom(err) and model is not None:  # a model-free stage may run in a thread beside the model stages
                self.pool.free_others(model)
                _free_cuda()
                if stage.shrink():  # the stage's model calls are larger than its batch: shrink those first
                    return self._process(stage, batch, model)
            if len(batch) == 1:
                return [Failure.of(err)]
            if _is_oom(err):
                self.batch_size[stage.name] = min(self.batch_size[stage.name], max(1, len(batch) // 2))
                size = self.batch_size[stage.name]
                log.warning("%s: out of memory on a batch of %d; batch size halved to %d", stage.name, len(batch), size)
                done: list[Result] = []
                while len(done) < len(batch):  # at the batch size as it is now: a chunk may halve it again
                    done += self._process(stage, batch[len(done) : len(done) + self.batch_size[stage.name]], model)
                return done
            return [r for sample in batch for r in self._process(stage, [sample], model)]

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


class Stopped(Exception):
    """Raised in a worker thread (overlap) when the run has stopped; the run raises its own error."""


def split_model_free(stages: list[Stage[Any, Any]]) -> tuple[list[Stage[Any, Any]], ...]:
    """``stages`` as (the model-free ones before the first model stage, the rest up to the last model stage,
    the model-free ones after it); with no model stage at all, every stage is in the first part."""
    has_model = [i for i, stage in enumerate(stages) if stage.role is not None]
    if not has_model:
        return stages, [], []
    first, last = has_model[0], has_model[-1] + 1
    return stages[:first], stages[first:last], stages[last:]


def card_info(recipe: Recipe, report: dict[str, Any], repo_id: str | None = None) -> Any:
    """What the dataset card says about the run: recipe, models, settings, the (filled-in-later) report, and the
    Hub repo (``repo_id``, else the recipe's ``output.push_to_hub``)."""
    from syngen.export import CardInfo

    models: dict[str, dict[str, str | None]] = {}
    for name, cfg in recipe.stages.items():
        if isinstance(cfg, ModelStageConfig) and cfg.model is not None:
            models[name] = {"id": cfg.model.id, "revision": cfg.model.revision}
    settings = {name: cfg.model_dump(mode="json", exclude={"model"}) for name, cfg in recipe.stages.items()}
    return CardInfo(
        name=recipe.name,
        license=recipe.top.output.license,
        recipe_text=recipe.text,
        models=models,
        settings=settings,
        report=report,
        pretty_name=recipe.top.output.pretty_name,
        description=recipe.top.description,
        repo_id=repo_id or recipe.top.output.push_to_hub,
        out_dir=recipe.top.output.dir,
    )


def failure_record(stage: str, sample: Sample, failure: dict[str, Any]) -> dict[str, Any]:
    """A line of ``failures.jsonl``: the stage, the seed item the sample came from (its file name, dataset index
    or captions line, as the source names it), the sample id, the failure's kind, message and traceback tail."""
    source: dict[str, Any] = dict(sample.get("source") or {})
    return {
        "stage": stage,
        "item": source.get("item"),
        "source": source.get("kind"),
        "id": sample["id"],
        "kind": failure["kind"],
        "message": failure["message"],
        "detail": failure.get("detail", ""),
    }


def _updates(result: Outcome) -> list[Update]:
    return [] if isinstance(result, Failure) else result if isinstance(result, list) else [result]


def _encoding(result: Outcome) -> bool:
    """Whether an update of ``result`` has its image still encoding (a Future)."""
    return any(isinstance(update.get("image"), Future) for update in _updates(result))


def _unfinished(result: Result) -> bool:
    """Whether ``result`` is still running beside the model or has an image still encoding (a Future not done: a
    done one, such as beside a CPU model, needs no wait)."""
    if isinstance(result, Future):
        return not result.done()
    return any(isinstance(u.get("image"), Future) and not u["image"].done() for u in _updates(result))


def _rows(sample: Sample, result: Result) -> list[Row]:
    """Store rows for one input sample's result, once it is finished and its images are encoded (work that raised
    beside the model, or an encoding that raised, makes the sample a failure)."""
    try:
        outcome = result.result() if isinstance(result, Future) else result
    except Exception as err:
        outcome = Failure.of(err)
    if _encoding(outcome):
        try:
            outcome = [
                {**u, "image": u["image"].result() if isinstance(u.get("image"), Future) else u.get("image")}
                for u in _updates(outcome)
            ]
        except Exception as err:
            outcome = Failure.of(err, f"encoding the image failed: {err}")
    if isinstance(outcome, Failure):
        data = to_json(outcome.to_dict())
        return [{"input_id": sample["id"], "id": None, "status": "failed", "image": None, "data": data}]
    updates = outcome if isinstance(outcome, list) else [outcome | {"id": sample["id"]}]
    rows = []
    for update in updates:
        update = dict(update)
        out_id, image = update.pop("id"), update.pop("image", None)
        rows.append({"input_id": sample["id"], "id": out_id, "status": "ok", "image": image, "data": to_json(update)})
    return rows


def _merge(sample: Sample, rows: Iterable[Row], report: StageReport) -> list[Sample]:
    """The samples a stage produced from ``sample``, counting failures and ``*_stats`` columns into ``report``."""
    outputs = []
    for row in rows:
        data = json.loads(row["data"])
        if row["status"] == "failed":
            report.failed += 1
            report.failures[data["kind"]] += 1
            report.failure_examples.setdefault(data["kind"], data["message"][:300])
            continue
        for key, value in data.items():
            if key.endswith("_stats") and isinstance(value, dict):
                report.stats.update({k: v for k, v in value.items() if isinstance(v, (int, float))})
        new = {**sample, **data, "id": row["id"]}
        if row["image"] is not None:
            new["image"] = row["image"]
        outputs.append(cast(Sample, new))
    return outputs


def _is_oom(err: BaseException) -> bool:
    torch = sys.modules.get("torch")  # a model that raised CUDA's error imported torch
    return (torch is not None and isinstance(err, torch.cuda.OutOfMemoryError)) or "out of memory" in str(err).lower()


def _cuda() -> Any:
    """torch when CUDA is in use (torch imported by a model, and a GPU seen), else None: a run whose stages load
    no model never imports torch."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and torch.cuda.is_available() else None


def _free_cuda() -> None:
    if torch := _cuda():
        torch.cuda.empty_cache()


def _reset_peak_memory() -> None:
    if torch := _cuda():
        torch.cuda.reset_peak_memory_stats()


def _peak_memory_mb() -> float:
    """Peak GPU memory allocated on CUDA, else the process's peak resident memory."""
    if torch := _cuda():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
