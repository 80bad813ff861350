"""The executors' one lifecycle: every executor runs the base's prepare, shards, export and report merge once, in
that order, and overrides only how the shards run."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from syngen.executors import base
from syngen.executors.base import Executor, merge
from syngen.executors.local import LocalExecutor
from syngen.executors.ray import RayExecutor
from syngen.owned import ForeignFolder, claim
from syngen.recipe import load_recipe
from syngen.shard import WHOLE, Shard
from tests import fault_stages
from tests.executors.conftest import FakeRay

LIFECYCLE = {"run", "prepare", "export"}


@pytest.mark.parametrize("cls", [LocalExecutor, RayExecutor], ids=["local", "ray"])
def test_an_executor_overrides_only_how_the_shards_run(cls: type[Executor]) -> None:
    assert "run_shards" in vars(cls) and not LIFECYCLE & set(vars(cls))


def _make(kind: str, recipe: Path, out: Path) -> Executor:
    loaded = load_recipe(recipe)
    if kind == "ray":
        return RayExecutor(loaded, out, address="local", workers=2, gpus_per_worker=0.0, shards=3, progress=False)
    return LocalExecutor(loaded, out, progress=False, shard=WHOLE if kind == "local" else Shard(2, 3))


@pytest.mark.parametrize(
    "kind, report_file, exported",
    [
        pytest.param("local", "run.json", True, id="local-whole"),
        pytest.param("shard", "run-shard-2.json", False, id="local-shard-2-of-3"),
        pytest.param("ray", "run.json", True, id="ray-3-shards"),
    ],
)
def test_the_lifecycle_runs_once_in_order(
    fake_ray: FakeRay, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, kind: str, report_file: str, exported: bool
) -> None:
    calls: list[str] = []

    def recording(name: str, method: Callable[..., Any]) -> Callable[..., Any]:
        def record(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return method(*args, **kwargs)

        return record

    executor = _make(kind, fault_stages.write_recipe(tmp_path, 6), tmp_path / "out")
    for name in ("prepare", "export"):  # the base's: an executor overriding them would not be recorded
        monkeypatch.setattr(Executor, name, recording(name, getattr(Executor, name)))
    monkeypatch.setattr(type(executor), "run_shards", recording("run_shards", type(executor).run_shards))
    monkeypatch.setattr(base, "merge", recording("merge", base.merge))
    report = executor.run()
    assert calls == ["prepare", "run_shards", "export", "merge"]
    assert json.loads((tmp_path / "out" / report_file).read_text()) == report
    assert (tmp_path / "out" / "dataset").is_dir() == exported
    assert report["stages"]["source"]["computed"] == (3 if kind == "shard" else 6)  # shard 2/3 owns 3 of the 6 ids
    assert ("shards" in report) == (kind == "ray")


def test_ray_refuses_a_foreign_dataset_folder_before_starting_a_cluster(fake_ray: FakeRay, tmp_path: Path) -> None:
    out = tmp_path / "out"
    claim(out)  # the output folder is syngen's, the dataset folder in it is not
    (out / "dataset").mkdir()
    (out / "dataset" / "notes.txt").write_text("mine")
    with pytest.raises(ForeignFolder, match="dataset"):
        _make("ray", fault_stages.write_recipe(tmp_path, 2), out).run()
    assert fake_ray.inits == [] and (out / "dataset" / "notes.txt").read_text() == "mine"


def test_ray_with_nothing_new_leaves_the_dataset_as_it_is(fake_ray: FakeRay, tmp_path: Path) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 4), tmp_path / "out"
    _make("ray", recipe, out).run()
    exported = (out / base.EXPORTED_STATE).stat().st_mtime_ns
    report = _make("ray", recipe, out).run()
    assert (out / base.EXPORTED_STATE).stat().st_mtime_ns == exported  # not exported again
    assert report["stages"]["source"]["items_in"] == 4 and report["stages"]["source"]["computed"] == 0


def _stage(computed: int, wall_s: float, peak: float) -> dict[str, Any]:
    return {"computed": computed, "wall_s": wall_s, "load_s": 0.5, "model_s": 1.0, "peak_mem_mb": peak}


@pytest.mark.parametrize(
    "shard_stages, expected",
    [
        pytest.param([], _stage(9, 9.0, 1.0) | {"items_per_s": 9.0}, id="no-shards-elsewhere-unchanged"),
        pytest.param(
            [_stage(2, 1.0, 10.0), _stage(4, 3.0, 30.0)],
            # sums of computed, wall_s, load_s, model_s; the largest peak; 6 items / 4.0 s
            {"computed": 6, "wall_s": 4.0, "load_s": 1.0, "model_s": 2.0, "peak_mem_mb": 30.0, "items_per_s": 1.5},
            id="two-shards-summed",
        ),
        pytest.param(
            [_stage(0, 0.0, 5.0)],
            {"computed": 0, "wall_s": 0.0, "load_s": 0.5, "model_s": 1.0, "peak_mem_mb": 5.0, "items_per_s": 0.0},
            id="nothing-computed-no-rate",
        ),
    ],
)
def test_merge_sums_the_shards_compute_figures(shard_stages: list[dict[str, Any]], expected: dict[str, Any]) -> None:
    driver = {"total_s": 2.0, "stages": {"caption": _stage(9, 9.0, 1.0) | {"items_per_s": 9.0, "items_in": 6}}}
    merged = merge(driver, [{"stages": {"caption": stage}} for stage in shard_stages])
    assert merged["stages"]["caption"] == expected | {"items_in": 6}  # the stores' counts stay the driver's
    assert merged.get("shards") == (len(shard_stages) or None) and merged["total_s"] == 2.0
