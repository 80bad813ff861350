"""The Ray executor on a local cluster of two CPU workers gives the one-process dataset."""

from __future__ import annotations

from pathlib import Path

import pytest

from syngen.recipe import load_recipe
from tests.executors.conftest import dataset_rows, ranks, stored_ids

pytest.importorskip("ray", reason="the ray extra is not installed: pip install -e '.[ray]'")


def test_local_ray_cluster_gives_the_one_process_dataset(small_recipe: Path, one_process: Path, tmp_path: Path):
    from syngen.executors.ray import run

    out = tmp_path / "out"
    report = run(load_recipe(small_recipe), out, workers=2, shards=3, progress=False)
    assert dataset_rows(out) == dataset_rows(one_process)
    assert report["shards"] == 3 and report["stages"]["caption"]["computed"] == 6
    assert ranks(out, "caption") == {"r0", "r1", "r2"}
    for stage, ids in stored_ids(out).items():
        assert len(ids) == len(set(ids)) == 6, stage
