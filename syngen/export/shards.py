"""Shard writing: a config's rows as ``data/<config>/train-NNNNN.parquet`` files, and the folder swap.

The dataset is built in ``<out>/.dataset.tmp`` and swapped in at the end (:func:`swap_in`); :func:`recover`
undoes what a killed export left, so a kill at any moment keeps the previous dataset.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetInfo, Features, SplitDict, SplitInfo
from datasets import Image as ImageFeature

from syngen.stats import config_dir


class ShardWriter:
    """Buffers rows of one config and writes them as parquet shards with datasets, each of at most ``max_rows``
    rows and about ``max_bytes`` of encoded images, so memory stays bounded whatever the dataset's size."""

    def __init__(self, dataset_dir: Path, config: str, features: Features, max_rows: int, max_bytes: int) -> None:
        self.config, self.folder, self.features = config, config_dir(dataset_dir, config), features
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.images = [name for name, feature in self.features.items() if isinstance(feature, ImageFeature)]
        self.rows: list[dict[str, Any]] = []
        self.bytes = self.shards = self.written = self.arrow_bytes = self.file_bytes = 0
        self.digest = hashlib.sha256()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.bytes += sum(len(row[name]["bytes"]) for name in self.images if row[name] is not None)
        if len(self.rows) >= self.max_rows or self.bytes >= self.max_bytes:
            self._flush()

    def close(self) -> DatasetInfo:
        """Writes what is buffered; returns the config's features, row count and sizes."""
        self._flush()
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

    def _flush(self) -> None:
        if not self.rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        columns = {name: [row[name] for row in self.rows] for name in self.features}
        shard = Dataset.from_dict(columns, features=self.features)
        path = self.folder / f"train-{self.shards:05d}.parquet"
        shard.to_parquet(str(path))
        self.arrow_bytes += shard.data.nbytes
        self.file_bytes += path.stat().st_size
        with path.open("rb") as written:
            for chunk in iter(lambda: written.read(1 << 20), b""):
                self.digest.update(chunk)
        self.written += len(self.rows)
        self.shards += 1
        self.rows, self.bytes = [], 0


def recover(out_dir: Path) -> None:
    """Undoes what a killed export left: a half-built folder, or a swap cut between its two renames."""
    shutil.rmtree(out_dir / ".dataset.tmp", ignore_errors=True)
    old, final = out_dir / ".dataset.old", out_dir / "dataset"
    if old.exists():
        if final.exists():
            shutil.rmtree(old)
        else:
            old.rename(final)


def swap_in(building: Path, final: Path) -> None:
    """Replaces ``final`` by ``building`` with two renames (see :func:`recover` for a kill between them)."""
    old = final.with_name(".dataset.old")
    if final.exists():
        final.rename(old)
    building.rename(final)
    shutil.rmtree(old, ignore_errors=True)
