"""Table cells as the published layouts store them: masks (RLE, polygons), sentence lists, split names."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from syngen.eval.sets.tables import sentences, split_of, to_mask
from syngen.masks import encode_rle

SQUARE = np.zeros((8, 10), bool)
SQUARE[2:6, 3:7] = True


@pytest.mark.parametrize(
    "value",
    [
        pytest.param(encode_rle(SQUARE), id="compressed-rle"),
        pytest.param({"size": [8, 10], "counts": [26, 4, 4, 4, 4, 4, 4, 4, 26]}, id="uncompressed-rle"),
        pytest.param([[3, 2, 7, 2, 7, 6, 3, 6]], id="polygon-list-pixel-corners"),
        pytest.param([3, 2, 7, 2, 7, 6, 3, 6], id="flat-polygon"),
        pytest.param(np.array([3, 2, 7, 2, 7, 6, 3, 6], np.float32).tolist(), id="flat-float32-polygon"),
    ],
)
def test_masks_from_rle_or_polygons(value) -> None:
    mask = to_mask(value, 8, 10)
    assert mask.shape == (8, 10)
    np.testing.assert_array_equal(mask, SQUARE)


@pytest.mark.parametrize(
    "value, words",
    [
        pytest.param(encode_rle(np.ones((10, 8), bool)), "mask size [10, 8]", id="rle-of-another-size"),
        pytest.param({"size": [8, 10], "counts": "0"}, "garbage RLE", id="garbage-compressed-rle"),
        pytest.param({"size": [8, 10], "counts": [26, 4]}, "garbage RLE", id="uncompressed-rle-too-short"),
    ],
)
def test_a_bad_rle_is_refused(value: dict, words: str) -> None:
    """pycocotools would decode these into a mask of the wrong size, or garbage, without an error."""
    with pytest.raises(ValueError, match=re.escape(words)):
        to_mask(value, 8, 10)


@pytest.mark.parametrize(
    "cell, expected",
    [
        pytest.param("the cat", ["the cat"], id="string"),
        pytest.param(["a", "b"], ["a", "b"], id="list-of-strings"),
        pytest.param(
            [{"sent": "left dog", "raw": "Left dog!"}, {"raw": "the dog"}], ["left dog", "the dog"], id="dicts"
        ),
        pytest.param([], [], id="none"),
    ],
)
def test_sentences(cell, expected) -> None:
    assert sentences(cell) == expected


@pytest.mark.parametrize(
    "name, split",
    [
        ("data/val-00000-of-00004.parquet", "val"),
        ("data/testA-00000-of-00001.parquet", "testA"),
        ("data/validation-00001-of-00002.parquet", "validation"),
        ("refs.parquet", "refs"),
    ],
)
def test_split_from_the_hub_file_name(name: str, split: str) -> None:
    assert split_of(Path(name)) == split


@pytest.mark.parametrize("form", ["image", "bytes", "path"])
def test_image_cells_decoded_or_not(form: str, tmp_path: Path) -> None:
    from PIL import Image

    from syngen.eval.sets.tables import to_image

    image = Image.new("L", (3, 2), 9)
    image.save(tmp_path / "a.png")
    cell = {"image": image, "bytes": {"bytes": (tmp_path / "a.png").read_bytes(), "path": None},
            "path": str(tmp_path / "a.png")}[form]  # fmt: skip
    out = to_image(cell)
    assert out.mode == "RGB" and out.size == (3, 2) and out.getpixel((0, 0)) == (9, 9, 9)


@pytest.mark.parametrize(
    "spec, words, asked",
    [
        pytest.param("lmms-lab/RefCOCO", "no such local folder, and the Hub is offline", True, id="hub-id-offline"),
        pytest.param("./refcoco", "no such folder (a path, so the Hub was not asked)", False, id="relative-path"),
        pytest.param(
            "/no/such/refcoco", "no such folder (a path, so the Hub was not asked)", False, id="absolute-path"
        ),
    ],
)
def test_a_dataset_neither_here_nor_in_the_cache_is_named(
    spec: str, words: str, asked: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Offline (tests/conftest.py) with the session's empty HF cache: one message naming the spec, no traceback;
    datasets is asked only about what may be a Hub id."""
    import datasets

    from syngen.errors import DatasetError
    from syngen.eval.sets.tables import load_tables

    looked: list[str] = []
    load = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda path, *a, **kw: looked.append(path) or load(path, *a, **kw))
    with pytest.raises(DatasetError, match=re.escape(f"{spec}: {words}")):
        load_tables(spec)
    assert looked == ([spec] if asked else [])


def test_a_hub_id_in_the_local_hub_cache_is_read_from_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Hub cache's layout: datasets--<owner>--<name>/refs/main names the snapshot holding the repo's files."""
    import huggingface_hub

    from syngen.devtools.layouts import lmms_refcoco
    from syngen.eval.sets import open_evalset

    repo = tmp_path / "hub" / "datasets--lmms-lab--RefCOCOg"
    commit = "0" * 40
    lmms_refcoco(repo / "snapshots" / commit, {"val": [(1, (0, 0, 4, 4), ["a", "b"])]})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    evalset = open_evalset("lmms-lab/RefCOCOg")
    assert evalset.name == "refcoco" and evalset.splits() == ["val"]
    assert [e.phrase for e in evalset.expressions("val")] == ["a", "b"]
