"""CPU work off the main thread, so the device is not kept waiting: the thread pool a run finishes its stages' work
in (mask checks, RLEs, PNG encoding; each run makes its own, see :mod:`syngen.engine.context`), an inline executor
(the work on this thread, as beside a CPU model), and a helper that hands a stream to a consumer running in a
worker thread (the export, while the next wave runs). ``on_gpu`` is the one test of whether a device is a GPU.

PIL, numpy, pyarrow and torch release the GIL in their heavy loops, so these threads overlap with model calls.
"""

from __future__ import annotations

import contextlib
import contextvars
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")


def _fulfil(future: Future[R], fn: Callable[..., R], *args: Any, **kwargs: Any) -> None:
    """Sets ``future`` to what ``fn(*args, **kwargs)`` returns, or to its error (delivered by ``result()``, as from
    a pool)."""
    try:
        future.set_result(fn(*args, **kwargs))
    except BaseException as err:
        future.set_exception(err)


class InlineExecutor(Executor):
    """Runs each task at once on the calling thread (``submit`` returns a finished future)."""

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        future: Future[R] = Future()
        _fulfil(future, fn, *args, **kwargs)
        return future


INLINE = InlineExecutor()


class Pool(Executor):
    """``workers`` threads for CPU work, started at the first task and stopped by :meth:`shutdown` (a later task
    starts them again); with 0 workers each task runs on the submitting thread. A task runs in the submitter's
    context (:mod:`contextvars`: the run's image cache and pool, see :mod:`syngen.engine.context`)."""

    def __init__(self, workers: int, name: str = "syngen-cpu"):
        self.workers = workers
        self.name = name
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()

    def submit(self, fn: Callable[..., R], /, *args: Any, **kwargs: Any) -> Future[R]:
        if not self.workers:
            return INLINE.submit(fn, *args, **kwargs)
        with self._lock:
            if self._executor is None:
                self._executor = ThreadPoolExecutor(self.workers, thread_name_prefix=self.name)
            executor = self._executor
        return executor.submit(contextvars.copy_context().run, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._lock:
            executor, self._executor = self._executor, None
        if executor is not None:
            executor.shutdown(wait, cancel_futures=cancel_futures)


def on_gpu(device: Any) -> bool:
    """Whether ``device`` (a name such as ``"cuda:1"`` or a ``torch.device``) is a GPU."""
    return str(device).startswith("cuda")


_END, _ABORT = object(), object()


class ProducerFailed(RuntimeError):
    """The stream feeding a consumer thread stopped with an error (the consumer must not finish its work)."""


def consume_in_thread(consumer: Callable[[Iterator[T]], R], items: Iterable[T], maxsize: int = 64) -> R:
    """``consumer(stream)`` run in a worker thread while this thread produces ``items`` into ``stream`` (at most
    ``maxsize`` waiting). Returns what the consumer returns. An error (or Ctrl-C) while producing drops the items
    waiting, reaches the consumer as :class:`ProducerFailed` from its stream and is then raised here; an error in
    the consumer stops the production and is raised here."""
    waiting: queue.Queue[Any] = queue.Queue(maxsize)
    outcome: dict[str, Any] = {}

    def stream() -> Iterator[T]:
        while (item := waiting.get()) is not _END:
            if item is _ABORT:
                raise ProducerFailed("the producer stopped with an error")
            yield item

    def work() -> None:
        try:
            outcome["value"] = consumer(stream())
        except BaseException as err:  # handed to the producing thread
            outcome["error"] = err

    worker: threading.Thread | None = None

    def started() -> threading.Thread:
        # started at the first item, in this thread's context as it is then (the run's bindings, made as the
        # stream starts)
        context = contextvars.copy_context()
        thread = threading.Thread(target=context.run, args=(work,), name="syngen-consumer", daemon=True)
        thread.start()
        return thread

    try:
        for item in items:
            worker = worker or started()
            if not _put(waiting, item, worker):
                break  # the consumer failed: its error is raised below
        worker = worker or started()
        _put(waiting, _END, worker)
    except BaseException:  # the items still queued are dropped: the consumer stops after the one in hand
        worker = worker or started()
        _drain(waiting)
        _put(waiting, _ABORT, worker)
        worker.join()
        raise
    worker.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def _drain(waiting: queue.Queue[Any]) -> None:
    """Removes every item waiting in the queue."""
    with contextlib.suppress(queue.Empty):
        while True:
            waiting.get_nowait()


def _put(waiting: queue.Queue[Any], item: Any, worker: threading.Thread) -> bool:
    """Puts ``item``, waiting for room while the worker lives; False when the worker is gone."""
    while worker.is_alive():
        try:
            waiting.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False
