"""Training data: resolving a DATASET argument and reading the ``grounding`` regions and ``preference`` pairs.

DATASET is a syngen output folder (its ``dataset/`` is used), a dataset folder, or a Hub dataset id. Pairs are
read with :func:`syngen.data.load_preference`, so they may embed their image or refer to the ``grounding``
row's image by ``image_id``. Items are plain dicts; masks are decoded from COCO RLE when an item is read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets
from torch.utils.data import Dataset

from syngen.data import load_preference, read_dataset
from syngen.errors import DatasetError
from syngen.masks import decode_rle


def dataset_path(spec: str) -> str:
    """The folder or Hub id to load: ``<spec>/dataset`` for a syngen output folder, else ``spec``."""
    inner = Path(spec) / "dataset"
    return str(inner) if (inner / "README.md").exists() else spec


# the columns each config must have for training and scoring
COLUMNS = {"grounding": ("id", "image", "regions"), "preference": ("prompt", "chosen", "rejected")}


def load_split(spec: str, config: str, split: str) -> datasets.Dataset:
    """Config ``config`` (``grounding`` or ``preference``) of the dataset ``spec``, split ``split``, as it is on
    disk now for a local folder (:func:`syngen.data.read_dataset`).

    Raises :class:`~syngen.errors.DatasetError` naming the dataset when it, its config, its split or one of the
    config's :data:`COLUMNS` is not there.
    """
    path = dataset_path(spec)
    try:
        rows = load_preference(path, split=split) if config == "preference" else read_dataset(path, config, split)
    except DatasetError as err:
        raise DatasetError(f"{err} (reading its {config!r} config, split {split!r})") from None
    except (FileNotFoundError, ValueError, KeyError) as err:
        raise DatasetError(f"{spec}: cannot read the {config!r} config, split {split!r}: {err}") from None
    missing = [name for name in COLUMNS[config] if name not in rows.column_names]
    if missing:
        raise DatasetError(
            f"{spec}: the {config!r} config has no {', '.join(missing)} column; it has "
            f"{', '.join(rows.column_names)}, where a syngen dataset's has {', '.join(COLUMNS[config])}"
        )
    return rows


class RegionDataset(Dataset):
    """One item per region of the ``grounding`` config: ``{"key", "image", "phrase", "box", "mask"}``.

    ``key`` is the image's id (stable across epochs, for the embedding cache); ``box`` is xyxy pixels; ``mask``
    is (H, W) bool, or None when the region has none. Regions missing a field of ``require`` are skipped.
    """

    def __init__(self, rows: datasets.Dataset, require: tuple[str, ...] = ("phrase", "mask")):
        self.rows = rows.select_columns(["id", "image", "regions"])
        regions = rows.select_columns(["regions"])["regions"]
        self.index = [
            (row, i)
            for row, found in enumerate(regions)
            for i, region in enumerate(found or [])
            if all(region.get(name) for name in require)
        ]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, item: int) -> dict[str, Any]:
        row, i = self.index[item]
        record = self.rows[row]
        region = record["regions"][i]
        return {
            "key": record["id"],
            "image": record["image"].convert("RGB"),
            "phrase": region["phrase"],
            "box": region.get("box"),
            "mask": decode_rle(region["mask"]) if region.get("mask") else None,
        }


class PairDataset(Dataset):
    """One item per ``preference`` pair: ``{"index", "key", "image", "phrase", "chosen", "rejected"}``."""

    def __init__(self, pairs: datasets.Dataset):
        self.pairs = pairs

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, item: int) -> dict[str, Any]:
        pair = self.pairs[item]
        return {
            "index": item,
            "key": pair.get("image_id") or "",
            "image": pair["image"].convert("RGB"),
            "phrase": pair["prompt"],
            "chosen": decode_rle(pair["chosen"]),
            "rejected": decode_rle(pair["rejected"]),
        }
