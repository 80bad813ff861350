"""A shard: the deterministic K-th of N shares of the seed items, from a flag or a launcher's environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from syngen.errors import UsageError


class ShardError(UsageError, ValueError):
    """A shard spec (flag or environment) that does not name a share: K/N with 0 <= K < N."""


@dataclass(frozen=True)
class Shard:
    """Share ``rank`` of ``count``: the seed items whose stable id, as a number, is ``rank`` modulo ``count``."""

    rank: int = 0
    count: int = 1

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.count:
            raise ShardError(f"shard {self.rank}/{self.count}: expected K/N with 0 <= K < N")

    @property
    def whole(self) -> bool:
        """Whether this is the only shard (a one-process run)."""
        return self.count == 1

    def owns(self, sample_id: str) -> bool:
        """Whether the sample with this id (16 hex digits, see :func:`syngen.sample.make_id`) is in this share."""
        return int(sample_id, 16) % self.count == self.rank

    def __str__(self) -> str:
        return f"{self.rank}/{self.count}"

    @classmethod
    def parse(cls, spec: str) -> Shard:
        """``"K/N"`` -> Shard(K, N)."""
        try:
            rank, count = (int(part) for part in spec.split("/"))
        except ValueError:
            raise ShardError(f"--shard {spec!r}: expected K/N, e.g. 0/4 for the first of four shards") from None
        return cls(rank, count)


WHOLE = Shard()  # a one-process run: every seed item


def shard_from_env(env: Mapping[str, str] | None = None) -> Shard:
    """The shard a launcher gave this process: torchrun/accelerate (``RANK``, ``WORLD_SIZE``) or a Slurm array
    (``SLURM_ARRAY_TASK_ID`` - ``SLURM_ARRAY_TASK_MIN`` of ``SLURM_ARRAY_TASK_COUNT``); the whole run otherwise."""
    env = os.environ if env is None else env
    try:
        if "WORLD_SIZE" in env:
            return Shard(int(env.get("RANK", "0")), int(env["WORLD_SIZE"]))
        if "SLURM_ARRAY_TASK_COUNT" in env:
            task, first = int(env["SLURM_ARRAY_TASK_ID"]), int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
            return Shard(task - first, int(env["SLURM_ARRAY_TASK_COUNT"]))
    except (KeyError, ValueError) as err:
        raise ShardError(f"the launcher's shard environment is incomplete or not numbers ({err})") from None
    return WHOLE
