"""Locks: shards share a folder, a shard cannot run twice, a whole run excludes shards and the other way; a
process may take its own lock again (the command line before its imports, the executor after)."""

from __future__ import annotations

import fcntl
import multiprocessing
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest
from filelock import FileLock

from syngen.executors.lock import RunLocked, folder_lock
from syngen.owned import ForeignFolder, claim
from syngen.shard import Shard

WHOLE, FIRST, SECOND = Shard(), Shard(0, 2), Shard(1, 2)


def _hold(out: Path, shards: list[Shard], ready: object, done: object) -> None:
    with ExitStack() as stack:
        for shard in shards:
            stack.enter_context(folder_lock(out, shard))
        ready.set()  # type: ignore[attr-defined]
        done.wait(60)  # type: ignore[attr-defined]


@contextmanager
def held_by_another_process(out: Path, shards: list[Shard]) -> Iterator[None]:
    """The locks of ``shards`` on ``out``, held by a child process until the block ends."""
    ctx = multiprocessing.get_context("fork")
    ready, done = ctx.Event(), ctx.Event()
    proc = ctx.Process(target=_hold, args=(out, shards, ready, done))
    proc.start()
    try:
        assert ready.wait(60), "the child process did not take its locks"
        yield
    finally:
        done.set()
        proc.join(60)


@pytest.mark.parametrize(
    "held, wanted, allowed",
    [
        pytest.param([FIRST], SECOND, True, id="two-shards-share"),
        pytest.param([FIRST], FIRST, False, id="same-shard-twice"),
        pytest.param([WHOLE], FIRST, False, id="shard-beside-whole-run"),
        pytest.param([FIRST, SECOND], WHOLE, False, id="whole-run-beside-shards"),
        pytest.param([WHOLE], WHOLE, False, id="two-whole-runs"),
    ],
)
def test_folder_locks(tmp_path: Path, held: list[Shard], wanted: Shard, allowed: bool) -> None:
    with held_by_another_process(tmp_path, held):
        if allowed:
            with folder_lock(tmp_path, wanted):
                pass
        else:
            with pytest.raises(RunLocked), folder_lock(tmp_path, wanted):
                pass
    with folder_lock(tmp_path):  # all released
        pass


def _free(lock: Path) -> bool:
    """Whether an exclusive flock on ``lock`` can be taken now (through a new open file, as another process)."""
    fd = os.open(lock, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    finally:
        os.close(fd)


def test_a_process_takes_its_own_lock_again_and_keeps_it_until_the_outer_exit(tmp_path: Path) -> None:
    with folder_lock(tmp_path):
        with folder_lock(tmp_path):  # the executor inside the command line's lock
            assert not _free(tmp_path / ".lock")
        assert not _free(tmp_path / ".lock")  # still held after the inner exit
    assert _free(tmp_path / ".lock")


def test_a_filelock_on_the_folder_excludes_shards(tmp_path: Path) -> None:
    claim(tmp_path)
    with FileLock(str(tmp_path / ".lock")), pytest.raises(RunLocked, match="whole"), folder_lock(tmp_path, FIRST):
        pass


def test_a_foreign_folder_is_refused_before_any_lock_file(tmp_path: Path) -> None:
    (tmp_path / "thesis.txt").write_text("x")
    with pytest.raises(ForeignFolder, match="thesis.txt"), folder_lock(tmp_path):
        pass
    assert [p.name for p in tmp_path.iterdir()] == ["thesis.txt"]
