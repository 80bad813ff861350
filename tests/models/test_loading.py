"""Resolving models before any compute: tiny twins built once, local paths, and clear failures offline."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from syngen.models.loading import PreflightError, backend_for, build_tiny, resolve
from syngen.models.twins import TINY
from syngen.refs import ModelRef


def test_tiny_twin_is_built_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNGEN_CACHE", str(tmp_path))
    first = build_tiny("segmenter")
    stamp = first.stat().st_mtime_ns
    assert resolve(ModelRef(id="tiny:segmenter")) == first
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "tiny").iterdir() if not p.name.endswith(".lock")] == [first.name]


@pytest.mark.parametrize(
    "ref, expected",
    [
        (ModelRef(id="tiny:sdxl"), "diffusers"),
        (ModelRef(id="facebook/sam-vit-base"), "sam"),
        (ModelRef(id="x/y", backend="llava"), "llava"),
    ],
    ids=["tiny-twin-has-its-own", "stage-default", "explicit"],
)
def test_backend_for(ref: ModelRef, expected: str) -> None:
    assert backend_for(ref, "sam") == expected


def test_every_tiny_twin_names_a_backend() -> None:
    assert all(backend_for(ModelRef(id=f"tiny:{name}"), None) for name in TINY)


def test_local_folder_resolves_to_itself(tmp_path: Path) -> None:
    assert resolve(ModelRef(id=str(tmp_path))) == tmp_path


def test_missing_model_fails_at_once_offline() -> None:
    start = time.perf_counter()
    with pytest.raises(PreflightError) as err:
        resolve(ModelRef(id="some-org/not-cached-anywhere", revision="v2"))
    assert time.perf_counter() - start < 5
    assert "some-org/not-cached-anywhere" in str(err.value)
    assert "hf download some-org/not-cached-anywhere --revision v2" in str(err.value)
