"""Reading benchmark tables: parquet files, ``save_to_disk`` folders, Hub-layout folders and Hub ids (from the
local cache when offline), one ``datasets.Dataset`` per split; and the cell conventions tables share (sentence
lists, COCO RLE and polygon masks)."""

from __future__ import annotations

import glob
import io
import re
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from huggingface_hub import snapshot_download
from PIL import Image
from pycocotools import mask as mask_utils

from syngen.data import folder_files, fresh_cache_dir, read_splits
from syngen.errors import DatasetError
from syngen.masks import decode_rle, rle_problem

# The Hub's parquet naming (``data/<split>-00000-of-00004.parquet``): lmms-lab/RefCOCO*, moondream/refcoco-m
SHARD = re.compile(r"^(?P<split>.+?)-\d{5}-of-\d{5}$")


def split_of(path: Path) -> str:
    """The split a parquet file holds, from its name: ``val-00000-of-00004.parquet`` -> ``val``,
    ``testA.parquet`` -> ``testA``."""
    found = SHARD.match(path.stem)
    return found["split"] if found else path.stem


def hub_snapshot(repo_id: str) -> Path | None:
    """The Hub dataset repo's files in the local Hub cache (``hf download``, ``snapshot_download``), or None."""
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", local_files_only=True))
    except (OSError, ValueError):  # not cached (LocalEntryNotFoundError), or not a repo id
        return None


def load_tables(spec: str) -> dict[str, datasets.Dataset]:
    """The splits of a table dataset: a parquet file or glob, a folder of parquet files (searched recursively,
    hidden folders left out, split from each file's name), a ``save_to_disk`` folder, or a Hub id: its files in
    the local Hub cache, else what ``datasets`` has cached of it (nothing is downloaded when offline). Local files
    are read as they are on disk now (:func:`~syngen.data.fresh_cache_dir`). Raises
    :class:`~syngen.errors.DatasetError` naming ``spec`` when none can be read."""
    path = Path(spec).expanduser()
    snapshot: Path | None = None
    if "*" in spec or path.suffix == ".parquet":
        files = sorted(map(Path, glob.glob(str(path))))
    elif (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        loaded = datasets.load_from_disk(str(path))  # arrow files read in place: no cache to go stale
        return dict(loaded) if isinstance(loaded, datasets.DatasetDict) else {path.name: loaded}
    elif path.is_dir():
        files = sorted(p for p in folder_files(path) if p.suffix == ".parquet")
    elif (snapshot := hub_snapshot(spec)) is not None:
        files = sorted(snapshot.rglob("*.parquet"))
    else:
        try:
            return read_splits(spec)
        except DatasetError:  # read_dataset's own: the path was not there, or why the Hub had nothing
            raise
        except (FileNotFoundError, ValueError) as err:
            raise DatasetError(f"{spec}: not a dataset folder, parquet file or cached Hub dataset: {err}") from None
    if not files:
        raise DatasetError(f"{spec}: no parquet file found")
    by_split: dict[str, list[str]] = {}
    for file in files:
        by_split.setdefault(split_of(file), []).append(str(file))
    # a Hub snapshot's files are named by their content and never change: datasets' own cache of them stays fresh
    cache_dir = None if snapshot else fresh_cache_dir(files)
    return dict(datasets.load_dataset("parquet", data_files=by_split, cache_dir=cache_dir))


def sentences(value: Any) -> list[str]:
    """The expressions in a text cell: a string, or a list of strings or of dicts with ``sent``/``raw``."""
    if isinstance(value, str):
        return [value]
    out = []
    for item in value or []:
        text = item if isinstance(item, str) else (item.get("sent") or item.get("raw") if item else None)
        if text:
            out.append(text)
    return out


def to_mask(value: Any, height: int, width: int) -> np.ndarray:
    """A (H, W) bool mask from COCO RLE (compressed or not) or polygons (a list of [x, y, ...] lists, or one
    flat list: one polygon), rasterised with pycocotools at (height, width); raises ValueError for RLE of
    another size than (height, width), or garbage (:func:`~syngen.masks.rle_problem`)."""
    if isinstance(value, dict):
        problem = rle_problem(value, height, width)
        if problem:
            raise ValueError(problem)
        if isinstance(value.get("counts"), list):  # uncompressed RLE
            value = mask_utils.frPyObjects(value, *value["size"])
            return mask_utils.decode(value).astype(bool)
        return decode_rle(value)
    polygons = value if value and isinstance(value[0], list | tuple) else [value]
    polygons = [list(map(float, p)) for p in polygons if p is not None and len(p) >= 6]
    if not polygons:
        return np.zeros((height, width), bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(polygons, height, width))
    return mask_utils.decode(rle).astype(bool)


def to_image(value: Any) -> Image.Image:
    """An image cell as RGB: a decoded image, ``{"bytes", "path"}`` (an image column read without its feature
    type), or a file path."""
    if isinstance(value, dict):
        value = io.BytesIO(value["bytes"]) if value.get("bytes") else value.get("path")
    return (value if isinstance(value, Image.Image) else Image.open(value)).convert("RGB")
