"""The per-stage executor decides where a stage's finish runs: in the run's pool beside a GPU model (the batch's
results come back before their finish is done), on the calling thread beside a CPU model or with no model; and no
stage module schedules work or checks devices itself."""

from __future__ import annotations

import ast
import threading
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest

import syngen.stages
from syngen.cpus import Threads
from syngen.engine.context import RunContext
from syngen.engine.stage import StageExecutor
from syngen.stages.base import Context, Stage

GATE = threading.Event()
THREADS: list[str] = []


class Doubling(Stage):
    """``process`` passes each sample's number on; ``finish`` doubles it once the gate opens."""

    name = "doubling"

    def process(self, samples: list[dict], model: Any) -> list[int]:
        return [sample["n"] for sample in samples]

    def finish(self, sample: dict, n: int) -> dict:
        THREADS.append(threading.current_thread().name)
        assert GATE.wait(10)
        return {"double": 2 * n}


class OnDevice:
    def __init__(self, device: str):
        self.device = device


@pytest.mark.parametrize(
    ("model", "in_pool"),
    [
        pytest.param(OnDevice("cuda:0"), True, id="beside-a-gpu-in-the-pool"),
        pytest.param(OnDevice("cpu"), False, id="beside-a-cpu-model-inline"),
        pytest.param(None, False, id="no-model-inline"),
    ],
)
def test_the_engine_runs_finish_in_the_pool_beside_a_gpu_else_inline(model: Any, in_pool: bool) -> None:
    context = RunContext(Threads(torch=1, pool=2))
    executor = StageExecutor(None, {}, {}, context, print, print, {"doubling": 8})  # type: ignore[arg-type]
    stage = Doubling(Stage.Config(), Context(recipe_dir=Path(".")))
    GATE.clear()
    THREADS.clear()
    if not in_pool:
        GATE.set()  # inline, finish runs before the batch's results come back
    results = executor._process(stage, [{"id": str(n), "n": n} for n in range(3)], model)
    assert all(isinstance(r, Future) for r in results)
    assert all(r.done() for r in results) != in_pool  # beside a GPU, still finishing
    GATE.set()
    assert [r.result() for r in results] == [{"double": 0}, {"double": 2}, {"double": 4}]
    on_main = [name == threading.current_thread().name for name in THREADS]
    assert len(THREADS) == 3 and all(on_main) != in_pool and any(on_main) != in_pool
    context.close()


def test_a_stage_without_finish_hands_its_results_over_as_they_are() -> None:
    class Plain(Stage):
        name = "plain"

        def process(self, samples: list[dict], model: Any) -> list[dict]:
            return [{"seen": True} for _ in samples]

    context = RunContext(Threads(torch=1, pool=2))
    executor = StageExecutor(None, {}, {}, context, print, print, {"plain": 8})  # type: ignore[arg-type]
    stage = Plain(Stage.Config(), Context(recipe_dir=Path(".")))
    assert executor._process(stage, [{"id": "a"}], OnDevice("cuda")) == [{"seen": True}]


SCHEDULING = {"concurrent.futures", "syngen.threads", "syngen.engine", "threading"}
DEVICE_CHECKS = {"on_gpu", "beside_model", "after", "POOL", "RUN_POOL"}


@pytest.mark.parametrize("path", sorted(Path(syngen.stages.__file__).parent.glob("*.py")), ids=lambda p: p.stem)
def test_no_stage_module_schedules_work_or_checks_devices(path: Path) -> None:
    tree = ast.parse(path.read_text())
    modules = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    modules |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    names |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) for alias in node.names}
    assert not {m for m in modules if m and any(m == s or m.startswith(s + ".") for s in SCHEDULING)}
    assert not names & DEVICE_CHECKS
