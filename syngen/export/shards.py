"""Shard writing: a config's rows as ``data/<config>/train-NNNNN.parquet`` files.

The dataset is built in ``<out>/.dataset.tmp`` and swapped in at the end by :func:`syngen.owned.replacing`.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from datasets import DatasetInfo, Features, SplitDict, SplitInfo
from datasets import Image as ImageFeature
from datasets.arrow_writer import ParquetWriter
from datasets.features.features import encode_nested_example

from syngen.stats import config_dir


class ShardWriter:
    """Writes rows of one config as parquet shards through datasets' ``ParquetWriter``, each of at most ``max_rows``
    rows and about ``max_bytes`` of encoded images. Rows go to the open shard a row group at a time (100 rows for
    image features, datasets' default), so memory holds one row group, not one shard, whatever the dataset's size."""

    def __init__(self, dataset_dir: Path, config: str, features: Features, max_rows: int, max_bytes: int) -> None:
        self.config, self.folder, self.features = config, config_dir(dataset_dir, config), features
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.images = [name for name, feature in self.features.items() if isinstance(feature, ImageFeature)]
        self.writer: ParquetWriter | None = None  # the open shard's
        self.rows = self.bytes = 0  # in the open shard
        self.shards = self.written = self.arrow_bytes = self.file_bytes = 0
        self.digest = hashlib.sha256()

    def add(self, row: dict[str, Any]) -> None:
        if self.writer is None:
            self.folder.mkdir(parents=True, exist_ok=True)
            self.writer = ParquetWriter(features=self.features, path=str(self._path()))
        self.writer.write(encode(self.features, row))
        self.rows += 1
        self.bytes += sum(len(row[name]["bytes"]) for name in self.images if row[name] is not None)
        if self.rows >= self.max_rows or self.bytes >= self.max_bytes:
            self._finish()

    def close(self) -> DatasetInfo:
        """Finishes the open shard; returns the config's features, row count and sizes."""
        self._finish()
        splits = SplitDict()
        splits.add(SplitInfo(name="train", num_bytes=self.arrow_bytes, num_examples=self.written))
        return DatasetInfo(
            description=f"syngen export, shards sha256 {self.digest.hexdigest()[:16]}",
            config_name=self.config,
            features=self.features,
            splits=splits,
            download_size=self.file_bytes,
            dataset_size=self.arrow_bytes,
        )

    def _path(self) -> Path:
        return self.folder / f"train-{self.shards:05d}.parquet"

    def _finish(self) -> None:
        if self.writer is None:
            return
        rows, arrow_bytes = self.writer.finalize()
        path = self._path()
        self.arrow_bytes += arrow_bytes
        self.file_bytes += path.stat().st_size
        with path.open("rb") as written:
            for chunk in iter(lambda: written.read(1 << 20), b""):
                self.digest.update(chunk)
        self.written += rows
        self.shards += 1
        self.writer, self.rows, self.bytes = None, 0, 0


PLAIN = frozenset({str, int, float, bool, bytes, type(None)})  # what datasets' casting pass leaves as it is


def encode(features: Features, row: dict[str, Any]) -> dict[str, Any]:
    """``features.encode_example(row)``, without its first pass where ``row`` holds plain python values only (dicts,
    lists, tuples, str, int, float, bool, bytes, None: a row from the stores' JSON): that pass casts numpy, torch,
    pandas or PIL values to python and returns plain ones as they are, walking every dict of the row to find out."""
    return encode_nested_example(features, row) if plain(row) else features.encode_example(row)


def plain(value: Any) -> bool:
    """Whether ``value`` is made of plain python values only (exact types: a subclass such as numpy's str_ is not)."""
    kind = type(value)
    if kind is dict:
        return all(plain(item) for item in value.values())
    if kind is list or kind is tuple:
        return all(plain(item) for item in value)
    return kind in PLAIN
