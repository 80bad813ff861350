"""A run's context: bound while the run streams (load_image reads its cache, in the pool's threads too), closed at
the end (threads stopped, writes on disk, images dropped); flush_writes waits for the open runs' writes."""

from __future__ import annotations

import threading

from PIL import Image

from syngen.cpus import Threads
from syngen.engine.context import RunContext, flush_writes
from syngen.sample import image_bytes, load_image


def test_bound_shares_decoded_images_in_this_thread_and_the_pool_and_closes_at_the_end() -> None:
    context = RunContext(Threads(torch=1, pool=2))
    sample = {"image": image_bytes(Image.new("RGB", (4, 4), "red"))}
    with context.bound():
        first = load_image(sample)
        assert load_image(sample) is first  # decoded once
        assert context.pool.submit(load_image, sample).result() is first  # the pool's threads see the run's cache
        assert context.writer.submit(threading.current_thread).result().name.startswith("syngen-store")
    assert context.pool._executor is None and context.writer._executor is None  # threads stopped
    assert not context.images._images  # images dropped
    outside = load_image(sample)
    assert outside is not first and outside.tobytes() == first.tobytes()  # outside a run: decoded anew


def test_flush_writes_waits_for_an_open_run_s_writes() -> None:
    context, gate, written = RunContext(Threads(torch=1, pool=0)), threading.Event(), []
    with context.bound():
        context.writer.submit(lambda: gate.wait(10) and written.append(True))
        threading.Timer(0.2, gate.set).start()
        flush_writes()
        assert written == [True]
