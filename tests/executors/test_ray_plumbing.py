"""The Ray executor's plumbing, without ray: a stand-in ``ray`` module runs the actors in this process, so the
environment the workers get and the shards they are given are checked in the default suite (test_ray.py runs
the real thing where the ``ray`` extra is installed, as .ci/run does)."""

from __future__ import annotations

import itertools
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from syngen import stages as registry
from syngen.recipe import load_recipe
from tests import fault_stages
from tests.executors.conftest import ranks, stored_ids


class _Call:
    """``actor.method`` and ``actor.method.options(...)``: ``.remote(*args)`` calls it now, records the args."""

    def __init__(self, method: Callable[..., Any], calls: list[tuple[str, tuple]]):
        self.method, self.calls = method, calls

    def options(self, **kwargs: Any) -> _Call:
        return self

    def remote(self, *args: Any) -> Any:
        self.calls.append((self.method.__name__, args))
        return self.method(*args)


class _Actor:
    def __init__(self, instance: Any, calls: list[tuple[str, tuple]]):
        self.instance, self.calls = instance, calls

    def __getattr__(self, name: str) -> _Call:
        return _Call(getattr(self.instance, name), self.calls)


class FakeRay(types.ModuleType):
    """What ray.run uses of ray: init, shutdown, remote(cls).options(...).remote(...), util.ActorPool."""

    def __init__(self) -> None:
        super().__init__("ray")
        self.inits: list[dict[str, Any]] = []
        self.calls: list[tuple[str, tuple]] = []
        self.util = types.ModuleType("ray.util")
        self.util.ActorPool = self._pool  # type: ignore[attr-defined]

    def init(self, **kwargs: Any) -> None:
        self.inits.append(kwargs)

    def shutdown(self) -> None:
        pass

    def remote(self, cls: type) -> Any:
        fake = self

        class Remote:
            def options(self, **kwargs: Any) -> Remote:
                return self

            def remote(self, *args: Any) -> _Actor:
                return _Actor(cls(*args), fake.calls)

        return Remote()

    @staticmethod
    def _pool(actors: list[_Actor]) -> Any:
        class Pool:
            def map_unordered(self, fn: Callable[[Any, Any], Any], values: list[Any]) -> Iterator[Any]:
                for actor, value in zip(itertools.cycle(actors), values):
                    yield fn(actor, value)

        return Pool()


@pytest.fixture
def fake_ray(monkeypatch: pytest.MonkeyPatch) -> FakeRay:
    for name, cls in fault_stages.FAKES.items():
        monkeypatch.setitem(registry.STAGES, name, f"tests.fault_stages:{cls.__name__}")
    ray = FakeRay()
    monkeypatch.setitem(sys.modules, "ray", ray)
    monkeypatch.setitem(sys.modules, "ray.util", ray.util)
    return ray


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
