"""Locks on an output folder (which syngen claims first, see :mod:`syngen.owned`): a one-process run or an
export holds the whole folder (``.lock``, exclusive); a shard shares ``.lock`` with the other shards and holds its
own ``.lock-<rank>``. So N shards write one folder together, while two runs of the same shard, or a shard beside a
whole run, cannot."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from syngen.errors import RunLocked
from syngen.owned import claim
from syngen.shard import WHOLE, Shard

__all__ = ["RunLocked", "folder_lock"]


_HELD: set[tuple[str, Shard]] = set()  # the locks this process holds


@contextmanager
def folder_lock(out: Path, shard: Shard = WHOLE) -> Iterator[None]:
    """Hold ``out`` for a whole run (``shard.whole``) or for one shard; raises :class:`RunLocked` at once when
    another run holds it. The locks are flock locks, the same as filelock.FileLock's on Unix. ``out`` is claimed
    first (:func:`syngen.owned.claim`): a folder syngen did not make raises :class:`~syngen.owned.ForeignFolder`
    and is left untouched. Re-entrant within a process: the command line takes the lock before its slow imports,
    and the executor it calls takes it again."""
    key = (os.path.realpath(out), shard)
    if key in _HELD:  # held further up: the outer holder releases it
        yield
        return
    claim(out)
    with ExitStack() as stack:
        if shard.whole:
            stack.enter_context(_flock(out / ".lock", fcntl.LOCK_EX, "another syngen run"))
        else:
            stack.enter_context(_flock(out / ".lock", fcntl.LOCK_SH, "a whole (unsharded) syngen run"))
            stack.enter_context(_flock(out / f".lock-{shard.rank}", fcntl.LOCK_EX, f"another run of shard {shard}"))
        _HELD.add(key)
        try:
            yield
        finally:
            _HELD.discard(key)


@contextmanager
def _flock(path: Path, mode: int, holder: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
        except BlockingIOError:
            raise RunLocked(f"{holder} is writing to {path.parent} (lock {path}); wait for it or use --out") from None
        yield
    finally:
        os.close(fd)
