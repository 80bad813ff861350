"""Export shards: rows of plain python values skip datasets' casting pass, with the encoded rows and shard bytes
that ``Features.encode_example`` gives."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from datasets import Features
from PIL import Image

from syngen.export import schemas
from syngen.export import shards as export_shards
from syngen.export.rows import grounding_row, preference_rows
from syngen.export.shards import ShardWriter, encode, plain
from tests.export.test_export import SAMPLES, make_region, make_sample

CONFIGS = schemas()
GROUNDING, PREFERENCE = CONFIGS["grounding"].features, CONFIGS["preference"].features


def strict(value: Any) -> Any:
    """``value`` with each leaf's type beside it, so that equal values of other types (1, 1.0, True) differ."""
    if isinstance(value, dict):
        return (type(value), {key: strict(item) for key, item in value.items()})
    if isinstance(value, (list, tuple)):
        return (type(value), [strict(item) for item in value])
    return (type(value), value.tobytes() if isinstance(value, np.ndarray) else value)


def numpy_region() -> dict[str, Any]:
    """A region whose numbers are numpy's (a stage's output before its JSON round trip), one of them deep."""
    region = make_region((10, 10, 50, 40), kinds=("boundary",))
    region["box"] = [np.float32(v) for v in region["box"]]
    region["box_score"] = np.float32(0.5)
    region["views"][1]["score"] = np.float64(3.0)  # in the second view: datasets' casting looks at first items only
    return region


GROUNDING_ROWS = {
    "regions-and-negatives": grounding_row(SAMPLES[0], GROUNDING, []),
    "no-regions": grounding_row(SAMPLES[1], GROUNDING, []),
    "region-without-views": grounding_row(SAMPLES[2], GROUNDING, []),
    "region-never-segmented": grounding_row(SAMPLES[3], GROUNDING, []),
    "numpy-values": grounding_row(make_sample(4, [numpy_region()]), GROUNDING, []),
    "numpy-string-caption": grounding_row(make_sample(5, []) | {"caption": np.str_("a cup")}, GROUNDING, []),
    "tuple-box-int-width": grounding_row(
        make_sample(6, [make_region((1, 2, 3, 4)) | {"box": (1, 2, 3, 4)}]) | {"width": True}, GROUNDING, []
    ),
}
PREFERENCE_ROWS = {
    "pair": preference_rows(SAMPLES[0])[0],
    "pair-with-image": preference_rows(SAMPLES[0], embed_images=True)[1],
    "pair-int-iou": preference_rows(SAMPLES[2])[0] | {"iou": 1, "chosen_score": None},
    "pair-numpy-points": preference_rows(SAMPLES[0])[0] | {"points": [np.array([1.0, 2.0])], "labels": [np.int8(1)]},
    "pair-zero-dim-numpy-label": preference_rows(SAMPLES[0])[0] | {"labels": [np.array(1, np.int8)]},
    "pair-torch-box-and-points": preference_rows(SAMPLES[0])[0]
    | {"box": torch.tensor([1.0, 2.0, 3.0, 4.0]), "points": [[torch.tensor(1.0), 2.0]]},
    "pair-ordered-dict-mask": preference_rows(SAMPLES[0])[0] | {"chosen": OrderedDict(size=[1, 1], counts="1")},
    "pair-bytearray-mask": preference_rows(SAMPLES[0])[0]
    | {"chosen_mask": {"bytes": bytearray(b"\x89PNG"), "path": None}},
}
CASES = [(GROUNDING, row) for row in GROUNDING_ROWS.values()] + [(PREFERENCE, row) for row in PREFERENCE_ROWS.values()]
IDS = [f"grounding-{name}" for name in GROUNDING_ROWS] + [f"preference-{name}" for name in PREFERENCE_ROWS]


@pytest.mark.parametrize(("features", "row"), CASES, ids=IDS)
def test_encode_is_datasets_encode_example(features: Features, row: dict[str, Any]) -> None:
    assert strict(encode(features, row)) == strict(features.encode_example(row))


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"a": [1, 2.5, True, None, "x", b"y", (3, {"b": []})]}, True),
        ({"a": [1, np.int64(2)]}, False),
        ({"box": torch.tensor([1.0])}, False),
        ([[{"deep": np.float32(1)}]], False),
        (np.str_("x"), False),
        (OrderedDict(a=1), False),
        (bytearray(b"x"), False),
        (Image.new("1", (1, 1)), False),
    ],
    ids=[
        "plain-nested",
        "numpy-int-second",
        "torch",
        "numpy-float-deep",
        "numpy-str",
        "ordered-dict",
        "bytearray",
        "pil",
    ],
)
def test_plain_means_python_values_only(value: Any, expected: bool) -> None:
    assert plain(value) is expected


@pytest.mark.parametrize(
    ("name", "features", "rows"),
    [
        ("grounding", GROUNDING, [grounding_row(s, GROUNDING, []) for s in SAMPLES] * 60),
        ("preference", PREFERENCE, [row for s in SAMPLES for row in preference_rows(s)] * 90),
        ("preference", PREFERENCE, list(PREFERENCE_ROWS.values())[:3] * 50),
    ],
    ids=["grounding-240-rows", "preference-270-rows", "preference-varied-150-rows"],
)
def test_shards_are_those_encode_example_writes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, features: Features, rows: list[dict[str, Any]]
) -> None:
    """Shards of several row groups written through :func:`encode` hold the bytes that datasets' own
    ``encode_example`` writes."""

    def write(folder: Path) -> tuple[bytes, ...]:
        writer = ShardWriter(folder, name, features, max_rows=200, max_bytes=1 << 30)
        for row in rows:
            writer.add(row)
        writer.close()
        return tuple(path.read_bytes() for path in sorted(folder.rglob("*.parquet")))

    fast = write(tmp_path / "fast")
    monkeypatch.setattr(export_shards, "encode", lambda features, row: features.encode_example(row))
    assert len(fast) == -(-len(rows) // 200) and fast == write(tmp_path / "datasets")
