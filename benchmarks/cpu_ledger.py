"""CPU time of a run in all of syngen's threads, parted into model forward passes, the model wrappers' pre- and
post-processing, each stage's own work, the pool's tasks, the store writer, the export and the rest.

Not a benchmark itself; ``python benchmarks/overhead.py`` uses it. CPU time, not wall time, so the figures hold
on a loaded machine. How each part is counted:

- forward passes: torch's global module hooks read :func:`time.thread_time` at the outermost module call of each
  thread and after it (a ``generate`` loop counts its forwards; its token handling in between counts as the
  wrapper's). Torch must run one intra-op thread: CPU time of its other threads would be missed;
- a model wrapper's call: ``model_cpu_seconds`` (:func:`syngen.models.base.timed`), less its forward passes;
- a stage: the main thread's CPU time in the stage executor's ``run``, less its model calls, model loads and image
  encoding;
- the pool's, the store writer's and the export's work: the CPU time of each task in the thread that runs it;
- image encoding (PIL's ``Image.save``: PNG, JPEG), in whichever thread it runs, by format; the part around it
  leaves it out;
- the whole process: ``getrusage`` (every thread, those already ended too); what no part above holds is "rest"
  (the main thread between stages, other threads).

Apart from the parts, and across them, :attr:`Ledger.kernels` holds the CPU time of the library kernels whose
results the quickstart's pinned rows fix (:data:`KERNELS`; we know no faster way to the same bytes or bits), in
whichever thread and part they run; with image encoding they are the floor below which the figure cannot go at
default settings.
"""

from __future__ import annotations

import resource
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from PIL import Image
from pycocotools import mask as mask_utils

from syngen.engine.stage import StageExecutor
from syngen.executors import base
from syngen.models import sam_hf
from syngen.models.pool import ModelPool
from syngen.runner import Runner
from syngen.stages import views
from syngen.threads import Pool

KERNELS: dict[str, tuple[Any, str]] = {  # name -> (module, function): looked up there at each call
    "RLE encoding (pycocotools: the rows' mask strings)": (mask_utils, "encode"),
    "SAM's masks resized to the image (torch's bilinear kernel)": (sam_hf, "upscale"),
    "views' Lanczos thumbnails (PIL: their pHashes choose the views)": (views, "hash_thumbnail"),
}


def process_cpu() -> float:
    """CPU seconds of this process so far, in all its threads."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Ledger:
    """CPU seconds by part (see the module's docstring), filled while :meth:`watch` is open."""

    def __init__(self) -> None:
        self.parts: defaultdict[str, float] = defaultdict(float)
        self.kernels: defaultdict[str, float] = defaultdict(float)  # across the parts: see the module's docstring
        self.total = 0.0
        self._local = threading.local()  # per thread: module call depth, claimed seconds so far
        self._lock = threading.Lock()

    def _claimed_s(self) -> float:
        """This thread's CPU seconds so far in the parts counted apart wherever they run (forward passes, model
        loads, image encoding): the part around them leaves them out."""
        return getattr(self._local, "claimed", 0.0)

    def _add(self, part: str, seconds: float, claimed: bool = False) -> None:
        """Adds ``seconds`` to ``part``; ``claimed``: to this thread's claimed seconds too."""
        with self._lock:
            self.parts[part] += seconds
        if claimed:
            self._local.claimed = self._claimed_s() + seconds

    def _enter(self, *_: Any) -> None:
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._local.start = time.thread_time()
        self._local.depth = depth + 1

    def _forward_s(self) -> float:
        """This thread's CPU seconds so far in forward passes."""
        return getattr(self._local, "forward", 0.0)

    def _leave(self, *_: Any) -> None:
        self._local.depth -= 1
        if self._local.depth == 0:
            seconds = time.thread_time() - self._local.start
            self._local.forward = self._forward_s() + seconds
            self._add("model forward passes", seconds, claimed=True)

    @contextmanager
    def _counting(self, part: str, main_too: bool = True) -> Iterator[None]:
        """Adds this thread's CPU seconds in the block, less its model seconds, to ``part``; with ``main_too``
        False, only outside the main thread (inline on it, the work is part of the stage that called it)."""
        if not main_too and threading.current_thread() is threading.main_thread():
            yield
            return
        cpu, claimed = time.thread_time(), self._claimed_s()
        try:
            yield
        finally:
            self._add(part, time.thread_time() - cpu - (self._claimed_s() - claimed))

    def _kernel(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` with its CPU time added to :attr:`kernels` under ``name`` (its part counts it too)."""

        def counted(*args: Any, **kwargs: Any) -> Any:
            cpu = time.thread_time()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds = time.thread_time() - cpu
                with self._lock:
                    self.kernels[name] += seconds

        return counted

    def _task(self, part: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        """``fn`` counted under ``part`` where it runs outside the main thread."""

        def counted(*args: Any, **kwargs: Any) -> Any:
            with self._counting(part, main_too=False):
                return fn(*args, **kwargs)

        return counted

    @contextmanager
    def watch(self) -> Iterator[Ledger]:
        """Counts while open: patches the runner, the model pool, the pool, the store writer and the export."""
        saved: list[tuple[Any, str, Any]] = []

        def patch(owner: Any, name: str, value: Any) -> None:
            saved.append((owner, name, owner.__dict__.get(name)))
            setattr(owner, name, value)

        run_stage, process, preflight = StageExecutor.run, StageExecutor._process, Runner.preflight
        get, consume = ModelPool.get, base.consume_in_thread
        pool_submit, save = Pool.submit, Image.Image.save

        def counted_stage(executor: StageExecutor, stage: Any, wave: list, compute: bool) -> list:
            with self._counting(f"stage {stage.name}"):
                return run_stage(executor, stage, wave, compute)

        def counted_process(executor: StageExecutor, stage: Any, batch: list, model: Any) -> list:
            calls, forward = getattr(model, "model_cpu_seconds", 0.0), self._forward_s()
            try:
                return process(executor, stage, batch, model)
            finally:
                calls = getattr(model, "model_cpu_seconds", 0.0) - calls
                wrapper = calls - (self._forward_s() - forward)  # no wrapper encodes images: nothing else claimed
                self._add(f"stage {stage.name}", -wrapper)  # the stage's own work: what its model calls leave
                self._add(f"wrapper {stage.name}", wrapper)

        def counted_get(pool: ModelPool, *args: Any, **kwargs: Any) -> Any:
            cpu, claimed = time.thread_time(), self._claimed_s()
            try:
                return get(pool, *args, **kwargs)
            finally:
                self._add("model loading", time.thread_time() - cpu - (self._claimed_s() - claimed), claimed=True)

        def counted_save(image: Image.Image, fp: Any, format: str | None = None, **params: Any) -> None:
            cpu, claimed = time.thread_time(), self._claimed_s()
            try:
                save(image, fp, format, **params)
            finally:
                part = f"image encoding ({(format or image.format or '?').upper()})"
                self._add(part, time.thread_time() - cpu - (self._claimed_s() - claimed), claimed=True)

        def counted_preflight(runner: Runner) -> None:
            with self._counting("preflight"):  # building tiny twins: left out of syngen's figure, as loads are
                preflight(runner)

        def counted_consume(consumer: Callable[..., Any], items: Any, *args: Any, **kwargs: Any) -> Any:
            return consume(self._task("export (its thread)", consumer), items, *args, **kwargs)

        def counted_submit(pool: Pool, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
            part = "store writer" if pool.name == "syngen-store" else f"pool {fn.__qualname__}"
            return pool_submit(pool, self._task(part, fn), *args, **kwargs)

        patch(StageExecutor, "run", counted_stage)
        patch(StageExecutor, "_process", counted_process)
        patch(Runner, "preflight", counted_preflight)
        patch(ModelPool, "get", counted_get)
        patch(base, "consume_in_thread", counted_consume)
        patch(Pool, "submit", counted_submit)
        patch(Image.Image, "save", counted_save)
        for name, (module, function) in KERNELS.items():
            patch(module, function, self._kernel(name, getattr(module, function)))
        hooks = [
            torch.nn.modules.module.register_module_forward_pre_hook(self._enter),
            torch.nn.modules.module.register_module_forward_hook(self._leave, always_call=True),
        ]
        start = process_cpu()
        try:
            yield self
        finally:
            self.total = process_cpu() - start
            for hook in hooks:
                hook.remove()
            for owner, name, value in reversed(saved):
                if value is None:
                    delattr(owner, name)  # an instance attribute that hid the class's method
                else:
                    setattr(owner, name, value)

    def rest(self) -> float:
        """CPU seconds of the process that no part holds (the main thread between stages, other threads)."""
        return self.total - sum(self.parts.values())
