"""The Ray executor's plumbing, without ray: a stand-in ``ray`` module runs the actors in this process, so the
environment the workers get and the shards they are given are checked in the default suite (test_ray.py runs
the real thing where the ``ray`` extra is installed, as .ci/run does)."""

from __future__ import annotations

from pathlib import Path

import pytest

from syngen.recipe import load_recipe
from tests import fault_stages
from tests.executors.conftest import FakeRay, ranks, stored_ids


@pytest.mark.parametrize("workers, shards", [(2, 3), (3, 2)], ids=["more-shards", "more-workers"])
def test_each_shard_is_run_once_as_k_of_the_shard_count(
    fake_ray: FakeRay, tmp_path: Path, workers: int, shards: int
) -> None:
    from syngen.executors.ray import run

    out = tmp_path / "out"
    report = run(
        load_recipe(fault_stages.write_recipe(tmp_path, 6)), out, workers=workers, shards=shards, progress=False
    )
    assert sorted(args for name, args in fake_ray.calls if name == "run_shard") == [(k, shards) for k in range(shards)]
    assert report["shards"] == shards and report["stages"]["source"]["items_in"] == 6
    stored = stored_ids(out)
    assert ranks(out, "source") == {f"r{int(i, 16) % shards}" for i in stored["source"]}  # each id by its owner
    assert len(stored["source"]) == 6 and all(len(ids) == len(set(ids)) for ids in stored.values())


def test_the_workers_get_the_drivers_hub_and_syngen_settings(
    fake_ray: FakeRay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from syngen.executors.ray import run

    forwarded = {"HF_HOME": "/models/hf", "HF_ENDPOINT": "https://mirror", "SYNGEN_CACHE": "/c", "TOKENIZERS_X": "1"}
    for key, value in forwarded.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("UNRELATED_SECRET", "x")
    run(load_recipe(fault_stages.write_recipe(tmp_path, 2)), tmp_path / "out", workers=1, shards=1, progress=False)
    [init] = fake_ray.inits
    env = init["runtime_env"]["env_vars"]
    assert forwarded.items() <= env.items() and "UNRELATED_SECRET" not in env
