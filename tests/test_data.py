"""load_preference: pairs joined with their images, in the default (each image once) and embedded layouts; local
folders and parquet files read as they are on disk now (issue 25)."""

from __future__ import annotations

import os
from pathlib import Path

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from syngen.data import load_preference, read_dataset
from syngen.eval.evaluate import load_table
from syngen.export import export_dataset
from syngen.sample import image_bytes
from syngen.stats import summarize
from syngen.train.data import load_split
from tests.export.test_export import SAMPLES, make_info
from tests.helpers import draw_shapes

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


# Issue 25: a local folder or parquet file is read as it is on disk now. datasets keys its cache of a local folder
# by the folder's name and its card's metadata, and of parquet files by their modification times: these tests
# change the files and keep both. Each reader is one the trainer or eval uses (they exist under these names on
# every version, so that the tests can run against an older syngen).
def filter_in_place(shard: Path, keep: int) -> None:
    """Keeps the first ``keep`` rows of a parquet shard, written back with pyarrow (the card left as it was)."""
    pq.write_table(pq.read_table(shard).slice(0, keep), shard)


def test_pairs_filtered_in_place_are_read_at_once(tmp_path: Path) -> None:
    dataset = export_dataset(iter(DISTINCT), tmp_path, make_info())
    ids = load_preference(dataset)["id"]
    assert len(ids) == 3 and summarize(tmp_path)["preference"]["pairs"] == 3
    assert len(load_split(str(tmp_path), "grounding", "train")) == 4
    filter_in_place(next((dataset / "data/preference").glob("*.parquet")), 1)
    filter_in_place(next((dataset / "data/grounding").glob("*.parquet")), 2)
    pairs = load_preference(dataset)
    assert pairs["id"] == ids[:1]
    assert summarize(tmp_path)["preference"]["pairs"] == 1  # syngen inspect's figures
    assert pairs[0]["image"].size == PICTURES[pairs[0]["image_id"]].size
    assert load_split(str(tmp_path), "grounding", "train")["id"] == ["img0000", "img0001"]


def table_of(ids: list[str]) -> pa.Table:
    """Rows with the columns training asks of a ``grounding`` config (images and regions left empty)."""
    return pa.table(
        {"id": ids, "image": pa.nulls(len(ids), pa.binary()), "regions": pa.nulls(len(ids), pa.list_(pa.string()))}
    )


def hand_built(folder: Path, ids: list[str]) -> Path:
    """A Hub-layout folder whose card names one config, ``grounding`` (no ``dataset_info``): one parquet file."""
    (folder / "data").mkdir(parents=True)
    (folder / "README.md").write_text(
        "---\nconfigs:\n- config_name: grounding\n  data_files:\n  - split: train\n    path: data/train-*\n---\n"
    )
    pq.write_table(table_of(ids), folder / "data" / "train-00000-of-00001.parquet")
    return folder


# reader id -> the ids a reader the trainer or eval uses finds in a hand-built folder (or one of its files)
READERS = {
    "train-split": lambda path: load_split(str(path), "grounding", "train")["id"],
    "eval-table-folder": lambda path: load_table(str(path), "train")["id"],
    "eval-parquet-file": lambda path: load_table(str(path / "data" / "train-00000-of-00001.parquet"), "train")["id"],
}


@pytest.mark.parametrize("reader", list(READERS), ids=list(READERS))
def test_two_same_layout_folders_each_load_their_own_rows(tmp_path: Path, reader: str) -> None:
    read = READERS[reader]
    a = hand_built(tmp_path / "a" / "dataset", ["a1", "a2", "a3"])
    b = hand_built(tmp_path / "b" / "dataset", ["b1", "b2", "b3", "b4"])
    assert read(a) == ["a1", "a2", "a3"]
    assert read(b) == ["b1", "b2", "b3", "b4"]
    pq.write_table(table_of(["b5"]), b / "data" / "train-00000-of-00001.parquet")
    assert read(b) == ["b5"]
    assert read(a) == ["a1", "a2", "a3"]


def rewrite_keeping_size_and_time(path: Path, table: pa.Table) -> None:
    """Writes ``table`` over ``path``: same size, and the old modification time put back (a rewrite within one
    tick of a coarse clock, or a copy that keeps times, as ``cp -p`` and ``rsync -t`` do)."""
    before = path.stat()
    pq.write_table(table, path)
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    after = path.stat()
    assert (after.st_size, after.st_mtime_ns) == (before.st_size, before.st_mtime_ns)


@pytest.mark.parametrize("reader", list(READERS), ids=list(READERS))
def test_a_rewrite_with_the_same_size_and_time_is_seen(tmp_path: Path, reader: str) -> None:
    read = READERS[reader]
    folder = hand_built(tmp_path / "dataset", ["red box", "blue box"])
    assert read(folder) == ["red box", "blue box"]
    rewrite_keeping_size_and_time(folder / "data" / "train-00000-of-00001.parquet", table_of(["tan box", "pink box"]))
    assert read(folder) == ["tan box", "pink box"]


def test_a_hub_id_keeps_datasets_own_caching(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple] = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *args, **kwargs: calls.append((args, kwargs)) or "rows")
    assert read_dataset("org/name", "grounding", revision="abc") == "rows"
    assert calls == [(("org/name", "grounding"), {"split": "train", "revision": "abc"})]  # no cache_dir of ours
