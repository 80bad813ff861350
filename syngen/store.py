"""The resumable per-stage store: parquet part files under ``<out>/stages/<stage>/``.

Each part file holds the results of one batch, one row per output: ``input_id`` (the sample the stage read),
``id`` (the sample it produced; several rows share an input_id when a stage fans out), ``status`` ("ok" or
"failed"), ``image`` (new encoded image bytes, or null) and ``data`` (JSON of the columns the stage added, or of
the failure). An input id present in any part file is done. Files are written to a temporary name and renamed,
so a kill loses at most the batch in flight. ``fingerprint.json`` records what produced the folder; a different
fingerprint empties it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from syngen.errors import StaleStore

SCHEMA = pa.schema(
    [
        ("input_id", pa.string()),
        ("id", pa.string()),
        ("status", pa.string()),
        ("image", pa.binary()),
        ("data", pa.string()),
    ]
)
Row = dict[str, Any]
log = logging.getLogger(__name__)

__all__ = ["SCHEMA", "Row", "StageStore", "StaleStore", "atomic_write_text", "to_json"]


def to_json(value: Any) -> str:
    """JSON text of stage output; numpy scalars and arrays become plain numbers and lists."""

    def default(obj: Any) -> Any:
        if isinstance(obj, np.generic):
            return obj.item()
        if isinstance(obj, np.ndarray):
            return obj.tolist()
        raise TypeError(f"cannot store {type(obj).__name__} in a sample column")

    return json.dumps(value, default=default, separators=(",", ":"))


class StageStore:
    """The part files of one stage in one output folder."""

    def __init__(self, out: Path, stage: str, rank: int = 0):
        self.dir = out / "stages" / stage
        self.rank = rank
        self._index: dict[str, Path] | None = None

    def open(self, fingerprint: str, *, drop_stale: bool = True) -> bool:
        """Make the folder ready for ``fingerprint``; False when earlier results were dropped as stale.

        With ``drop_stale=False`` a different fingerprint raises :class:`StaleStore` instead."""
        marker = self.dir / "fingerprint.json"
        kept = True
        if marker.exists() and json.loads(marker.read_text()).get("fingerprint") != fingerprint:
            if not drop_stale:
                raise StaleStore(f"{self.dir} was made with other settings than the recipe's")
            parts = list(self.dir.glob("part-*.parquet"))
            rows = sum(_row_count(part) for part in parts)
            log.warning(
                "%s: the stage's settings changed; discarding %d stored result(s) in %d part file(s)",
                self.dir.name,
                rows,
                len(parts),
            )
            shutil.rmtree(self.dir)
            kept = False
        self.dir.mkdir(parents=True, exist_ok=True)
        if not marker.exists():
            atomic_write_text(marker, json.dumps({"fingerprint": fingerprint}))
        self._index = None
        return kept

    def index(self) -> dict[str, Path]:
        """input_id -> the part file holding its rows (read once, then kept up to date by :meth:`write`)."""
        if self._index is None:
            self._index = {}
            for part in sorted(self.dir.glob("part-*.parquet")):
                try:
                    ids = pq.read_table(part, columns=["input_id"]).column(0).to_pylist()
                except (OSError, pa.ArrowException) as err:  # damaged outside syngen: set aside, its samples redone
                    part.rename(part.with_name(f"corrupt-{part.name}"))
                    log.warning(
                        "%s is unreadable (%s); moved aside as corrupt-%s, its samples will be recomputed",
                        part,
                        err,
                        part.name,
                    )
                    continue
                for input_id in ids:
                    self._index[input_id] = part
        return self._index

    def write(self, rows: list[Row]) -> None:
        """Append one batch of rows as a new part file, atomically."""
        if not rows:
            return
        table = pa.Table.from_pylist(rows, schema=SCHEMA)
        part = self.dir / f"part-r{self.rank}-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet"
        tmp = self.dir / f".tmp-{part.name}"
        pq.write_table(table, tmp)
        os.replace(tmp, part)
        index = self.index()
        for row in rows:
            index[row["input_id"]] = part

    def read(self, input_ids: list[str]) -> dict[str, list[Row]]:
        """The stored rows of each given input id, in written order."""
        index = self.index()
        by_file: dict[Path, set[str]] = defaultdict(set)
        for input_id in input_ids:
            by_file[index[input_id]].add(input_id)
        rows: dict[str, list[Row]] = defaultdict(list)
        for part, wanted in by_file.items():
            for row in pq.read_table(part).to_pylist():
                if row["input_id"] in wanted:
                    rows[row["input_id"]].append(row)
        return rows


def _row_count(part: Path) -> int:
    """Rows of a part file, from its footer (0 if unreadable)."""
    try:
        return pq.read_metadata(part).num_rows
    except (OSError, pa.ArrowException):
        return 0


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(text)
    os.replace(tmp, path)
