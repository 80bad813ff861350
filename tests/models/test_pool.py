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
