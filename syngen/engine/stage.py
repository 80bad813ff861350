"""Runs one stage over one wave: samples already stored are read back, the others are computed in batches (a
batch that raises is retried sample by sample so the bad sample alone is recorded as a failure; on out-of-memory
the batch size is halved) and their results stored as they come, then every sample's rows are merged into the
stage's output samples, failures counted and written to ``failures.jsonl``.

Where a stage's :meth:`~syngen.stages.base.Stage.finish` (its CPU work on the model's output) runs is decided
here alone: beside a GPU in the run's pool, while this thread goes on with the next batch's model calls (the
batch is stored once that call is made); beside a CPU model on this thread, whose cores the pool's threads would
take from the model calls.
"""

from __future__ import annotations

import json
import logging
import resource
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from tqdm import tqdm

from syngen.engine.context import RunContext
from syngen.engine.report import StageReport, failure_record, merge
from syngen.models.loading import backend_for
from syngen.models.pool import ModelPool
from syngen.models.roles import Model
from syngen.sample import Failure, Sample
from syngen.stages.base import Outcome, Stage
from syngen.store import Row, StageStore, to_json
from syngen.threads import INLINE, on_gpu

log = logging.getLogger(__name__)
Result = Outcome | Future[Outcome]  # a sample's outcome, or its stage's finish still running

__all__ = ["StageExecutor", "Stopped"]


class Stopped(Exception):
    """Raised in a worker thread (overlap) when the run has stopped; the run raises its own error."""


class StageExecutor:
    """Runs the stages of one run, each over one wave at a time (:meth:`run`), with the run's models (``models``),
    stores, reports and resources (``context``). ``in_flight`` is how many waves are being computed at once (the
    decoded images kept are sized to them); ``failure`` writes one ``failures.jsonl`` line (from any thread), ``bar``
    gives a stage's progress bar; setting ``stop`` stops the stages after their current batch."""

    def __init__(
        self,
        models: ModelPool,
        stores: dict[str, StageStore],
        reports: dict[str, StageReport],
        context: RunContext,
        failure: Callable[[str], None],
        bar: Callable[[Stage[Any, Any]], tqdm],
        batch_size: dict[str, int],
    ):
        self.models = models
        self.stores = stores
        self.reports = reports
        self.context = context
        self.failure = failure
        self.bar = bar
        self.batch_size = batch_size  # by stage: its config's, halved on out-of-memory
        self.in_flight = 1
        self.stop = threading.Event()

    def run(self, stage: Stage[Any, Any], wave: list[Sample], compute: bool) -> list[Sample]:
        """The samples ``stage`` makes from ``wave``: computed (``compute``) or read back from its store."""
        start = time.perf_counter()
        report = self.reports[stage.name]
        store = self.stores[stage.name]
        done = store.index()
        stored = [s["id"] for s in wave if s["id"] in done]
        pending = [s for s in wave if s["id"] not in done]
        rows = self._compute(stage, pending, len(wave)) if pending and compute else {}
        rows |= store.read(stored)
        merged = self._collect(stage, wave, rows)
        report.wall_s += time.perf_counter() - start
        report.items_per_s = report.computed / report.wall_s if report.wall_s else 0.0
        return merged

    def _compute(self, stage: Stage[Any, Any], pending: list[Sample], wave_size: int) -> dict[str, list[Row]]:
        """The rows of ``pending`` (a wave of ``wave_size`` samples) computed by ``stage`` and stored, by input id."""
        report = self.reports[stage.name]
        # the wave as it is now (after a fan-out), the others in flight, the one the export is drawing (it runs a
        # wave behind, see executors/local.py) and the seed images a synthesis replaced
        self.context.images.fit(wave_size * (self.in_flight + 2))
        if stage.role is not None:  # a model-free stage runs beside the model stages: it leaves their peak alone
            _reset_peak_memory()
        model = self._model(stage, wave_size)
        model_s0 = getattr(model, "model_seconds", 0.0)
        rows = self._batches(stage, pending, model)
        report.model_s += getattr(model, "model_seconds", 0.0) - model_s0
        report.computed += len(pending)
        if stage.role is not None:
            report.peak_mem_mb = max(report.peak_mem_mb, _peak_memory_mb())
        return rows

    def _model(self, stage: Stage[Any, Any], wave_size: int) -> Model | None:
        """``stage``'s model from the pool (loaded now unless resident), its load counted in the report."""
        report = self.reports[stage.name]
        loads = self.models.loads.total()
        model, load_s = self.models.get(
            stage.model_ref(),
            stage.default_backend,
            stage.model_dtype(),
            stage.model_options(),
            compile=getattr(stage.config, "compile", False),
        )
        if hasattr(model, "cache_limit"):  # e.g. SAM's embeddings: the whole wave after fan-out
            model.cache_limit = max(model.cache_limit, wave_size)
        ref = stage.model_ref()
        if ref is not None and self.models.loads.total() > loads:
            backend = backend_for(ref, stage.default_backend)
            log.info("%s: loaded %s (%s) in %.1f s", stage.name, ref.id, backend, load_s)
        report.load_s += load_s
        report.loads += self.models.loads.total() - loads
        return model

    def _batches(self, stage: Stage[Any, Any], pending: list[Sample], model: Model | None) -> dict[str, list[Row]]:
        """``pending`` run through ``stage`` batch by batch, each batch's rows stored (the files written while the
        next batch runs; a batch still finishing is stored after the next one's call); the rows by input id."""
        store, bar = self.stores[stage.name], self.bar(stage)
        rows: dict[str, list[Row]] = {}
        queue = list(pending)
        held: list[tuple[Sample, Result]] = []

        def keep(results: list[tuple[Sample, Result]]) -> None:
            batch_rows = [row for sample, result in results for row in _rows(sample, result)]
            store.write(batch_rows, wait=False)
            for row in batch_rows:
                rows.setdefault(row["input_id"], []).append(row)

        try:
            while queue:
                if self.stop.is_set():
                    raise Stopped(f"{stage.name}: the run stopped")
                size = self.batch_size[stage.name]
                batch, queue = queue[:size], queue[size:]
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
        return rows

    def _process(self, stage: Stage[Any, Any], batch: list[Sample], model: Model | None) -> list[Result]:
        """Results for a batch, finishing where :meth:`_finish` says; a failing batch is split to isolate the
        failing samples."""
        try:
            raws = stage.process(batch, model)
            if len(raws) != len(batch):
                raise RuntimeError(f"{stage.name} returned {len(raws)} results for {len(batch)} samples")
        except Exception as err:
            return self._failed(stage, batch, model, err)
        return self._finish(stage, batch, raws, model)

    def _finish(
        self, stage: Stage[Any, Any], batch: list[Sample], raws: list[Any], model: Model | None
    ) -> list[Result]:
        """Each sample's :meth:`~syngen.stages.base.Stage.finish` of its raw result (a Failure is one already): in the
        run's pool beside a GPU (futures), else here (done futures: an error fails that sample alone)."""
        if type(stage).finish is Stage.finish:  # nothing to finish
            return raws
        where = self.context.pool if on_gpu(getattr(model, "device", "cpu")) else INLINE
        return [
            raw if isinstance(raw, Failure) else where.submit(stage.finish, sample, raw)
            for sample, raw in zip(batch, raws, strict=True)
        ]

    def _failed(self, stage: Stage[Any, Any], batch: list[Sample], model: Model | None, err: Exception) -> list[Result]:
        """Results for a batch whose model calls raised ``err``: after out-of-memory at half the size, else sample
        by sample (a sample that raised alone is a Failure)."""
        if _is_oom(err) and model is not None:  # a model-free stage may run in a thread beside the model stages
            self.models.free_others(model)
            _free_cuda()
            if stage.shrink():  # the stage's model calls are larger than its batch: shrink those first
                return self._process(stage, batch, model)
        if len(batch) == 1:
            return [Failure.of(err)]
        if _is_oom(err):
            return self._halved(stage, batch, model)
        return [r for sample in batch for r in self._process(stage, [sample], model)]

    def _halved(self, stage: Stage[Any, Any], batch: list[Sample], model: Model | None) -> list[Result]:
        """Results for a batch that ran out of memory, at half its size from now on."""
        self.batch_size[stage.name] = min(self.batch_size[stage.name], max(1, len(batch) // 2))
        size = self.batch_size[stage.name]
        log.warning("%s: out of memory on a batch of %d; batch size halved to %d", stage.name, len(batch), size)
        done: list[Result] = []
        while len(done) < len(batch):  # at the batch size as it is now: a chunk may halve it again
            done += self._process(stage, batch[len(done) : len(done) + self.batch_size[stage.name]], model)
        return done

    def _collect(self, stage: Stage[Any, Any], wave: list[Sample], rows: dict[str, list[Row]]) -> list[Sample]:
        """The samples ``stage`` made from ``wave``, from their rows (a sample without rows was not computed: left
        out and counted), failures counted and written."""
        report = self.reports[stage.name]
        merged = []
        for sample in wave:
            sample_rows = rows.get(sample["id"])
            if sample_rows is None:  # not computed (compute=False): not part of the result
                report.not_computed += 1
                continue
            report.items_in += 1
            outputs = merge(sample, sample_rows, report)
            for row in sample_rows:
                if row["status"] == "failed":
                    self.failure(to_json(failure_record(stage.name, sample, json.loads(row["data"]))))
            report.items_out += bool(outputs)
            report.emitted += len(outputs)
            merged.extend(outputs)
        return merged


def _unfinished(result: Result) -> bool:
    """Whether ``result``'s finish is still running (a done one, such as beside a CPU model, needs no wait)."""
    return isinstance(result, Future) and not result.done()


def _rows(sample: Sample, result: Result) -> list[Row]:
    """Store rows for one input sample's result, once it is finished (a finish that raised makes the sample a
    failure)."""
    try:
        outcome = result.result() if isinstance(result, Future) else result
    except Exception as err:
        outcome = Failure.of(err)
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
