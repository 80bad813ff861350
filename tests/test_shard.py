"""Which seed items a shard takes: the flag, the launchers' environment, a partition of the ids."""

from __future__ import annotations

import pytest

from syngen.sample import make_id
from syngen.shard import Shard, ShardError, shard_from_env


@pytest.mark.parametrize(
    "env, expected",
    [
        pytest.param({}, Shard(0, 1), id="no-launcher-whole-run"),
        pytest.param({"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1"}, Shard(3, 4), id="torchrun-accelerate"),
        pytest.param({"WORLD_SIZE": "1"}, Shard(0, 1), id="torchrun-one-process"),
        pytest.param(
            {"SLURM_ARRAY_TASK_ID": "12", "SLURM_ARRAY_TASK_MIN": "10", "SLURM_ARRAY_TASK_COUNT": "5"},
            Shard(2, 5),
            id="slurm-array-from-10",
        ),
        pytest.param({"SLURM_ARRAY_TASK_ID": "1", "SLURM_ARRAY_TASK_COUNT": "2"}, Shard(1, 2), id="slurm-no-min"),
        pytest.param({"SLURM_JOB_ID": "7", "SLURM_PROCID": "0"}, Shard(0, 1), id="slurm-job-not-array"),
    ],
)
def test_shard_from_launcher_environment(env: dict[str, str], expected: Shard) -> None:
    assert shard_from_env(env) == expected


@pytest.mark.parametrize(
    "env",
    [
        pytest.param({"RANK": "4", "WORLD_SIZE": "4"}, id="rank-out-of-range"),
        pytest.param({"RANK": "x", "WORLD_SIZE": "2"}, id="rank-not-a-number"),
        pytest.param({"SLURM_ARRAY_TASK_COUNT": "2"}, id="slurm-without-task-id"),
    ],
)
def test_bad_launcher_environment_is_an_error(env: dict[str, str]) -> None:
    with pytest.raises(ShardError):
        shard_from_env(env)


@pytest.mark.parametrize(
    "spec, expected",
    [pytest.param("0/2", Shard(0, 2), id="first-of-two"), pytest.param("7/8", Shard(7, 8), id="last-of-eight")],
)
def test_parse(spec: str, expected: Shard) -> None:
    assert Shard.parse(spec) == expected and str(expected) == spec


@pytest.mark.parametrize("spec", ["2/2", "-1/2", "1", "a/b", "1/0", "1/2/3"])
def test_parse_rejects(spec: str) -> None:
    with pytest.raises(ShardError, match="K/N"):
        Shard.parse(spec)


@pytest.mark.parametrize("count", [1, 2, 3, 7])
def test_shards_partition_the_ids(count: int) -> None:
    ids = [make_id("source", "images", f"{i}.png") for i in range(500)]
    owners = [[k for k in range(count) if Shard(k, count).owns(i)] for i in ids]
    assert all(len(o) == 1 for o in owners)  # each id in exactly one shard
    sizes = [sum(o == [k] for o in owners) for k in range(count)]
    assert min(sizes) > 500 / count * 0.7  # and the shares are about even
