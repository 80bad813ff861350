"""For the executor tests: a small recipe (the quickstart's six seeds through caption and phrases, tiny twins,
one sample per wave so that a shard writes several parts), and a stand-in ``ray`` module that runs the actors
in this process (the fault stages registered), so that the Ray executor's plumbing is checked without ray."""

from __future__ import annotations

import itertools
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml

from syngen import stages as registry
from tests import fault_stages

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def small_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())
    recipe["source"]["path"] = str(REPO / "recipes" / "seeds" / "quickstart")
    recipe["runtime"]["wave_size"] = 1
    recipe["stages"] = {name: recipe["stages"][name] for name in ("caption", "phrases")}
    path = tmp_path_factory.mktemp("recipe") / "small.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="session")
def one_process(small_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the small recipe run in one process."""
    from syngen.executors.local import run
    from syngen.recipe import load_recipe

    out = tmp_path_factory.mktemp("one") / "out"
    run(load_recipe(small_recipe), out, progress=False)
    return out


def dataset_rows(out: Path) -> dict[str, list[dict]]:
    """Every row of every config of ``out``'s dataset, in file order."""
    data = out / "dataset" / "data"
    return {
        config.name: [row for f in sorted(config.glob("*.parquet")) for row in pq.read_table(f).to_pylist()]
        for config in sorted(data.iterdir())
    }


def stored_ids(out: Path) -> dict[str, list[str]]:
    """Per stage, the input ids of every stored row group of every data file (a duplicate shows twice)."""
    stores = {}
    for stage in sorted(p for p in (out / "stages").iterdir() if p.is_dir()):
        ids = []
        for f in stage.glob("*.parquet"):
            if f.name.startswith(("part-", "chunk-")):
                ids += sorted(set(pq.read_table(f, columns=["input_id"]).column(0).to_pylist()))
        stores[stage.name] = ids
    return stores


def ranks(out: Path, stage: str) -> set[str]:
    """The ranks that wrote ``stage``'s data files (``r0``, ``r1``, ...)."""
    return {
        p.name.split("-")[1] for p in (out / "stages" / stage).glob("*.parquet") if p.name.startswith(("part", "chunk"))
    }


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
