"""The wave scheduler: stage-major in waves. For each wave of ``runtime.wave_size`` seed items every stage runs
over the whole wave before the next stage starts; with overlap, the model-free stages before the first model stage
(the source) run over wave k + 1 in one worker thread and those after the last (views) over wave k - 1 in another,
while the model stages run here over wave k."""

from __future__ import annotations

import contextvars
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from itertools import islice
from typing import Any

from syngen.sample import Sample
from syngen.stages.base import Stage

__all__ = ["in_flight", "split_model_free", "waves"]

Stages = list[Stage[Any, Any]]


def split_model_free(stages: Stages) -> tuple[Stages, Stages, Stages]:
    """``stages`` as (the model-free ones before the first model stage, the rest up to the last model stage,
    the model-free ones after it); with no model stage at all, every stage is in the first part."""
    has_model = [i for i, stage in enumerate(stages) if stage.role is not None]
    if not has_model:
        return stages, [], []
    first, last = has_model[0], has_model[-1] + 1
    return stages[:first], stages[first:last], stages[last:]


def in_flight(lead: Stages, tail: Stages) -> int:
    """Waves being computed at once with ``lead`` run ahead and ``tail`` behind (each keeps its decoded images)."""
    return 1 + bool(lead) + bool(tail)


def waves(
    items: Iterator[Sample],
    wave_size: int,
    parts: tuple[Stages, Stages, Stages],
    run: Callable[[Stages, list[Sample]], list[Sample]],
    stop: threading.Event,
) -> Iterator[Sample]:
    """The final samples of ``items``, wave by wave: ``run(stages, wave)`` over each wave for the ``parts``
    (lead, middle, tail) of the stages, the lead a wave ahead and the tail a wave behind in worker threads (in
    this thread's context). Leaving early (Ctrl-C, an error) sets ``stop``: the workers stop after their current
    batch."""
    lead, middle, tail = parts
    stop.clear()
    with ThreadPoolExecutor(1, "syngen-ahead") as ahead, ThreadPoolExecutor(1, "syngen-behind") as behind:

        def submit(worker: ThreadPoolExecutor, stages: Stages, wave: list[Sample]) -> Future[list[Sample]]:
            return worker.submit(contextvars.copy_context().run, run, stages, wave)

        def lead_next_wave() -> Future[list[Sample]] | None:
            wave = list(islice(items, wave_size))
            return submit(ahead, lead, wave) if wave else None

        try:
            coming, finishing = lead_next_wave(), None
            while coming is not None:
                wave, coming = coming.result(), lead_next_wave()
                wave = run(middle, wave)
                if not tail:  # nothing runs behind: the wave is final now
                    yield from wave
                    continue
                if finishing is not None:
                    yield from finishing.result()
                finishing = submit(behind, tail, wave)
            if finishing is not None:
                yield from finishing.result()
        finally:
            stop.set()
