"""load_preference: pairs joined with their images, in the default (each image once) and embedded layouts."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from syngen.data import load_preference
from syngen.export import export_dataset
from syngen.sample import image_bytes
from tests.conftest import draw_shapes
from tests.export.test_export import SAMPLES, make_info

# the export test's samples, each on its own picture so a wrong join shows
PICTURES = {s["id"]: draw_shapes(seed=i) for i, s in enumerate(SAMPLES)}
DISTINCT = [s | {"image": image_bytes(PICTURES[s["id"]])} for s in SAMPLES]


def image_columns(dataset: Path) -> dict[str, list[str]]:
    """Config -> the columns of its shards that hold whole images."""
    return {
        config: [n for n in pq.read_schema(next((dataset / "data" / config).glob("*.parquet"))).names if n == "image"]
        for config in ("grounding", "preference")
    }


@pytest.mark.parametrize(
    "embed, stored",
    [
        pytest.param(False, {"grounding": ["image"], "preference": []}, id="default-each-image-once"),
        pytest.param(True, {"grounding": ["image"], "preference": ["image"]}, id="embedded-self-contained-rows"),
    ],
)
def test_pairs_come_with_their_images(tmp_path: Path, embed: bool, stored: dict[str, list[str]]) -> None:
    dataset = export_dataset(iter(DISTINCT), tmp_path, make_info(), embed_images=embed)
    assert image_columns(dataset) == stored
    pairs = load_preference(dataset)
    assert len(pairs) == 3
    for pair in pairs:
        np.testing.assert_array_equal(np.asarray(pair["image"].convert("RGB")), np.asarray(PICTURES[pair["image_id"]]))
    assert pairs["prompt"] == ["red box", "red box", "ball"]  # a column read without the join


def test_a_pair_whose_image_is_missing_raises(tmp_path: Path) -> None:
    dataset = export_dataset(iter(DISTINCT), tmp_path, make_info())
    shard = next((dataset / "data/grounding").glob("*.parquet"))
    table = pq.read_table(shard)
    pq.write_table(table.filter(np.array([i != "img0002" for i in table["id"].to_pylist()])), shard)
    # a fresh cache (not the intact export's cached copy), and no check of the card's row counts
    pairs = load_preference(dataset, cache_dir=str(tmp_path / "cache"), verification_mode="no_checks")
    assert pairs[0]["image"].size == PICTURES["img0000"].size
    with pytest.raises(KeyError, match="img0002"):
        pairs[2]
