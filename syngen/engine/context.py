"""One run's shared resources, made and sized in one place and closed at the run's end: the decoded-image cache
(the stages of a wave decode each image once), the CPU pool (encodings, compaction, a GPU stage's CPU work) and
the store's writer thread (part files written while the next batch runs).

While a run streams its samples the context is bound (:mod:`contextvars`) for the code below the engine:
:func:`syngen.sample.load_image` reads the cache (the engine hands the pool and the writer on itself). Threads the
engine starts (the pool's, the waves' workers, the export's consumer) run in the binding thread's context.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from syngen import cpus
from syngen.sample import RUN_IMAGES, DecodedImages
from syngen.threads import Pool

__all__ = ["RunContext", "flush_writes"]

log = logging.getLogger(__name__)
_OPEN: weakref.WeakSet[RunContext] = weakref.WeakSet()  # the contexts not closed yet, for flush_writes


@dataclass(eq=False)
class RunContext:
    """A run's decoded images, CPU pool and store writer (threads start at their first task)."""

    threads: cpus.Threads
    images: DecodedImages = field(init=False)
    pool: Pool = field(init=False)
    writer: Pool = field(init=False)

    def __post_init__(self) -> None:
        self.images = DecodedImages()  # sized to the waves in flight by the engine (StageExecutor)
        self.pool = Pool(self.threads.pool)
        self.writer = Pool(1, "syngen-store")  # one thread: a store's part files are written in order

    @classmethod
    def open(cls, threads: cpus.Threads) -> RunContext:
        """A context for a run with ``threads`` (:func:`syngen.cpus.plan`): torch's intra-op threads are set here,
        the pool gets ``threads.pool`` workers."""
        import torch

        torch.set_num_threads(threads.torch)
        log.debug("CPU threads: torch %d, pool %d", threads.torch, threads.pool)
        return cls(threads)

    @contextmanager
    def bound(self) -> Iterator[RunContext]:
        """This context bound for the stages and the stores in this thread (and the threads it starts) until the
        block ends; then closed."""
        _OPEN.add(self)
        RUN_IMAGES.set(self.images)
        try:
            yield self
        finally:  # set back, not reset: a stream may be closed from another context than it started in
            RUN_IMAGES.set(None)
            self.close()

    def close(self) -> None:
        """Wait for the writes and the pool's tasks, stop their threads and drop the decoded images (a later
        task starts the threads again)."""
        _OPEN.discard(self)
        self.writer.shutdown()
        self.pool.shutdown()
        self.images.clear()


def flush_writes() -> None:
    """Wait until every part file handed to an open run's writer is on disk or failed (a stopped run's last
    writes, before the process ends without tearing down)."""
    for context in list(_OPEN):
        context.writer.shutdown()
