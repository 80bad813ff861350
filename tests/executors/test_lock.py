"""Locks: shards share a folder, a shard cannot run twice, a whole run excludes shards and the other way."""

from __future__ import annotations

from contextlib import ExitStack
from pathlib import Path

import pytest
from filelock import FileLock

from syngen.executors.lock import RunLocked, folder_lock
from syngen.executors.shard import Shard

WHOLE, FIRST, SECOND = Shard(), Shard(0, 2), Shard(1, 2)


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
    with ExitStack() as stack:
        for shard in held:
            stack.enter_context(folder_lock(tmp_path, shard))
        if allowed:
            with folder_lock(tmp_path, wanted):
                pass
        else:
            with pytest.raises(RunLocked), folder_lock(tmp_path, wanted):
                pass
    with folder_lock(tmp_path):  # all released
        pass


def test_a_filelock_on_the_folder_excludes_shards(tmp_path: Path) -> None:
    with FileLock(str(tmp_path / ".lock")), pytest.raises(RunLocked, match="whole"), folder_lock(tmp_path, FIRST):
        pass
