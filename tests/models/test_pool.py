"""The model pool's size estimates: weight files before loading, parameters after."""

from __future__ import annotations

import pytest

from syngen.models.base import resolve_dtype
from syngen.models.loading import resolve
from syngen.models.pool import ModelPool, weights_bytes
from syngen.stages.base import ModelRef


@pytest.mark.parametrize("twin", [pytest.param("tiny:segmenter", id="sam"), pytest.param("tiny:sd", id="diffusers")])
def test_estimate_before_loading_matches_the_loaded_size(twin: str) -> None:
    ref = ModelRef(id=twin)
    pool = ModelPool("cpu", "float32", budget_bytes=2**40)
    adapter, _ = pool.get(ref, None)
    measured = adapter.memory_bytes()
    assert measured > 0
    assert 0.9 * measured <= weights_bytes(resolve(ref)) <= 1.1 * measured
    assert pool.resident_bytes() == measured
    pool.close()
    assert pool.resident_bytes() == 0


@pytest.mark.parametrize(
    "name, device, bf16, expected",
    [
        pytest.param("auto", "cpu", True, "float32", id="auto-cpu"),
        pytest.param("auto", "cuda", True, "bfloat16", id="auto-recent-gpu"),
        pytest.param("auto", "cuda", False, "float16", id="auto-older-gpu"),
        pytest.param("float16", "cpu", True, "float16", id="explicit"),
    ],
)
def test_resolve_dtype(monkeypatch: pytest.MonkeyPatch, name: str, device: str, bf16: bool, expected: str) -> None:
    monkeypatch.setattr("torch.cuda.is_bf16_supported", lambda *args, **kwargs: bf16)
    assert resolve_dtype(name, device) == expected


class Closing:
    """A loaded model of 1 GiB that records its closing."""

    def __init__(self, name: str, closed: list[str]):
        self.name, self.closed = name, closed

    def memory_bytes(self) -> int:
        return 2**30

    def close(self) -> None:
        self.closed.append(self.name)


@pytest.mark.parametrize(
    "device, loaded, budget_gib, then, closed, collections",
    [
        pytest.param("cuda", ["a", "b", "c"], 3, "close", ["a", "b", "c"], 1, id="close-three-on-gpu-collect-once"),
        pytest.param("cpu", ["a", "b", "c"], 3, "close", ["a", "b", "c"], 0, id="close-on-cpu-no-collection"),
        pytest.param("cpu", ["a", "b", "c"], 3, "d", ["a"], 1, id="evict-one"),
        pytest.param("cpu", ["a", "b", "c"], 3, "big", ["a", "b"], 1, id="evict-two-collect-once"),
        pytest.param("cpu", ["a", "b"], 3, "c", [], 0, id="fits-nothing-freed"),
        pytest.param("cuda", [], 3, "close", [], 0, id="close-empty-pool"),
    ],
)
def test_freed_models_are_collected_once(
    monkeypatch: pytest.MonkeyPatch,
    device: str,
    loaded: list[str],
    budget_gib: int,
    then: str,
    closed: list[str],
    collections: int,
) -> None:
    """A garbage collection costs a quarter of a second: freeing several models together collects once, and
    closing the pool at the end of a run collects only on a GPU."""
    done: list[str] = []
    monkeypatch.setattr("syngen.models.pool.load", lambda ref, *args, **kw: (Closing(ref.id, done), 0.0))
    monkeypatch.setattr("syngen.models.pool._estimate", lambda ref, dtype: 2**31 if ref.id == "big" else 2**30)
    counted: list[int] = []
    monkeypatch.setattr("syngen.models.pool.gc.collect", lambda: counted.append(1))
    pool = ModelPool(device, "float32", budget_bytes=budget_gib * 2**30)
    for name in loaded:
        pool.get(ModelRef(id=name, backend="blip"), None)
    assert not done and not counted
    if then == "close":
        pool.close()
    else:
        pool.get(ModelRef(id=then, backend="blip"), None)
    assert done == closed
    assert len(counted) == collections


def test_the_least_recently_used_model_is_freed_not_the_first_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    closed: list[str] = []
    monkeypatch.setattr("syngen.models.pool.load", lambda ref, *args, **kw: (Closing(ref.id, closed), 0.0))
    monkeypatch.setattr("syngen.models.pool._estimate", lambda ref, dtype: 2**30)
    pool = ModelPool("cpu", "float32", budget_bytes=3 * 2**30)
    a, b, c = (ModelRef(id=name, backend="blip") for name in "abc")
    for ref in (a, b, c, a):  # a loaded first, then used again: b is now the least recently used
        pool.get(ref, None)
    pool.get(ModelRef(id="d", backend="blip"), None)
    assert closed == ["b"]
    pool.get(a, None)
    pool.get(c, None)
    assert dict(pool.loads) == {"a": 1, "b": 1, "c": 1, "d": 1}  # a and c stayed resident


@pytest.mark.parametrize(
    "dtypes, loads",
    [
        pytest.param(["float16", "float16"], 1, id="same-dtype-shares"),
        pytest.param(["float16", "float32"], 2, id="other-dtype-loads-again"),
        pytest.param([None, "float32"], 1, id="default-is-the-runs"),
    ],
)
def test_a_stage_dtype_is_part_of_the_pool_key(
    monkeypatch: pytest.MonkeyPatch, dtypes: list[str | None], loads: int
) -> None:
    loaded: list[str] = []
    monkeypatch.setattr(
        "syngen.models.pool.load",
        lambda ref, backend, device, dtype, **kw: (loaded.append(dtype) or Closing(ref.id, []), 0.0),
    )
    monkeypatch.setattr("syngen.models.pool._estimate", lambda ref, dtype: 0)
    pool = ModelPool("cpu", "float32", budget_bytes=2**40)
    ref = ModelRef(id="m", backend="blip")
    for dtype in dtypes:
        pool.get(ref, None, dtype)
    assert loaded == list(dict.fromkeys(d or "float32" for d in dtypes))[:loads] and pool.loads["m"] == loads
