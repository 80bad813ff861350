"""Resolving models before any compute: tiny twins built once, local paths, and clear failures offline."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from syngen.models.loading import PreflightError, backend_for, build_tiny, resolve
from syngen.models.twins import TINY, Twin
from syngen.refs import ModelRef


def test_tiny_twin_is_built_once_and_cached(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNGEN_CACHE", str(tmp_path))
    first = build_tiny("segmenter")
    stamp = first.stat().st_mtime_ns
    assert resolve(ModelRef(id="tiny:segmenter")) == first
    assert first.stat().st_mtime_ns == stamp
    assert [p.name for p in (tmp_path / "tiny").iterdir() if not p.name.endswith(".lock")] == [first.name]


def test_building_a_twin_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The first use of a twin takes a while: a status line names it (and a cached one says nothing)."""
    monkeypatch.setenv("SYNGEN_CACHE", str(tmp_path))
    monkeypatch.setattr("syngen.models.loading.builder", lambda name: lambda folder: None)
    # a handler on the module's own logger sees each record once, whatever other tests left on its parents
    said: list[str] = []
    handler = logging.Handler(logging.INFO)
    handler.emit = lambda record: said.append(record.getMessage())  # type: ignore[method-assign]
    logger = logging.getLogger("syngen.models.loading")
    monkeypatch.setattr(logger, "level", logging.INFO)
    logger.addHandler(handler)
    try:
        build_tiny("segmenter")
        build_tiny("segmenter")
    finally:
        logger.removeHandler(handler)
    assert said == ["building tiny twin tiny:segmenter…"]


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


def test_every_pipeline_twin_names_a_backend() -> None:
    assert all(backend_for(ModelRef(id=f"tiny:{name}"), None) for name, twin in TINY.items() if twin.backend)


def build_toy(path: Path) -> None:
    """A stand-in builder for a twin only the trainer loads."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "config.json").write_text('{"toy": true}')


def test_a_trainer_only_twin_is_one_registry_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNGEN_CACHE", str(tmp_path))
    monkeypatch.setitem(TINY, "toy-trainer", Twin(None, f"{__name__}:build_toy"))
    folder = resolve(ModelRef(id="tiny:toy-trainer"))
    assert (folder / "config.json").read_text() == '{"toy": true}' and folder.parent == tmp_path / "tiny"
    with pytest.raises(PreflightError, match="for the trainer only"):
        backend_for(ModelRef(id="tiny:toy-trainer"), "blip")


def test_local_folder_resolves_to_itself(tmp_path: Path) -> None:
    assert resolve(ModelRef(id=str(tmp_path))) == tmp_path


def test_missing_model_fails_offline_with_how_to_fetch_it() -> None:
    with pytest.raises(PreflightError) as err:
        resolve(ModelRef(id="some-org/not-cached-anywhere", revision="v2"))
    assert "some-org/not-cached-anywhere" in str(err.value)
    assert "hf download some-org/not-cached-anywhere --revision v2" in str(err.value)
