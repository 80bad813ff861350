"""consume_in_thread: the consumer gets the stream in order; errors on either side stop both and are raised.
on_gpu: whether a device is a GPU. Pool: where its tasks run, in whose context."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import Any

import pytest
import torch

from syngen.threads import (
    INLINE,
    Pool,
    ProducerFailed,
    consume_in_thread,
    on_gpu,
)


def test_consumer_gets_every_item_in_order() -> None:
    assert consume_in_thread(list, iter(range(500)), maxsize=3) == list(range(500))


def test_a_producer_error_reaches_the_consumer_and_is_raised() -> None:
    seen: list[int] = []
    outcome: list[str] = []

    def produce() -> Iterator[int]:
        yield from range(5)
        raise ValueError("stage broke")

    def consume(stream: Iterator[int]) -> None:
        try:
            for item in stream:
                seen.append(item)
            outcome.append("finished")  # an export would swap in its dataset here
        except ProducerFailed:
            outcome.append("aborted")
            raise

    with pytest.raises(ValueError, match="stage broke"):
        consume_in_thread(consume, produce(), maxsize=2)
    assert seen == list(range(len(seen))) and outcome == ["aborted"]


def test_ctrl_c_while_producing_does_not_wait_for_the_queued_items() -> None:
    """The export consumes a wave behind: after Ctrl-C it stops after the sample in hand, not after the wave."""
    seen: list[int] = []

    def produce() -> Iterator[int]:
        yield from range(8)
        time.sleep(0.1)  # the consumer has taken the first item; seven wait in the queue
        raise KeyboardInterrupt

    def consume(stream: Iterator[int]) -> None:
        for item in stream:
            time.sleep(0.5)  # drawing and encoding one sample
            seen.append(item)

    start = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        consume_in_thread(consume, produce(), maxsize=8)
    assert seen == [0] and time.monotonic() - start < 1.5


def test_a_consumer_error_stops_the_producer_and_is_raised() -> None:
    produced: list[int] = []

    def produce() -> Iterator[int]:
        for i in range(10_000):
            produced.append(i)
            yield i

    def consume(stream: Iterator[int]) -> None:
        for item in stream:
            if item == 3:
                raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        consume_in_thread(consume, produce(), maxsize=2)
    assert len(produced) < 100


@pytest.mark.parametrize(
    ("device", "gpu"),
    [
        pytest.param("cuda", True, id="cuda"),
        pytest.param("cuda:1", True, id="cuda-index"),
        pytest.param(torch.device("cuda", 0), True, id="torch-cuda"),
        pytest.param("cpu", False, id="cpu"),
        pytest.param(torch.device("cpu"), False, id="torch-cpu"),
    ],
)
def test_on_gpu(device: Any, gpu: bool) -> None:
    assert on_gpu(device) == gpu


def test_the_inline_executor_runs_on_the_calling_thread_and_keeps_errors_for_result() -> None:
    threads = list(INLINE.map(lambda i: (i, threading.current_thread().name), range(3)))
    assert threads == [(i, threading.current_thread().name) for i in range(3)]
    failed = INLINE.submit(lambda: 1 / 0)
    assert failed.done()
    with pytest.raises(ZeroDivisionError):
        failed.result()


@pytest.mark.parametrize(
    ("workers", "in_worker"),
    [pytest.param(0, False, id="none-runs-inline"), pytest.param(2, True, id="two-threads")],
)
def test_the_pool_runs_its_tasks_where_its_size_says(workers: int, in_worker: bool) -> None:
    pool = Pool(workers)
    names = list(pool.map(lambda _: threading.current_thread().name, range(6)))
    assert all(name.startswith("syngen-cpu") == in_worker for name in names), names
    assert pool.workers == workers
    assert list(pool.map(lambda i: i * i, range(50))) == [i * i for i in range(50)]  # in order


SEEN: ContextVar[str] = ContextVar("seen", default="unset")


def test_the_pool_runs_tasks_in_the_submitter_s_context_and_starts_again_after_shutdown() -> None:
    pool = Pool(2)
    token = SEEN.set("the run's")
    try:
        assert pool.submit(SEEN.get).result() == "the run's"
    finally:
        SEEN.reset(token)
    pool.shutdown()
    assert pool._executor is None  # its threads are gone ...
    assert pool.submit(lambda: threading.current_thread().name).result().startswith("syngen-cpu")  # ... and back


def test_the_consumer_runs_in_the_producer_s_context_as_of_the_first_item() -> None:
    """A stream that binds a value as it starts (as a run binds its resources) hands it to the consumer."""

    def produce() -> Iterator[int]:
        token = SEEN.set("bound by the stream")
        try:
            yield from range(3)
        finally:
            SEEN.reset(token)

    assert consume_in_thread(lambda items: (list(items), SEEN.get()), produce()) == ([0, 1, 2], "bound by the stream")
