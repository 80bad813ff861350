"""The resumable per-stage store: parquet files under ``<out>/stages/<stage>/``.

Rows: ``input_id`` (the sample the stage read), ``id`` (the sample it produced; several rows share an input_id
when a stage fans out), ``status`` ("ok" or "failed"), ``image`` (new encoded image bytes, or null) and ``data``
(JSON of the columns the stage added, or of the failure). An input id present in the store is done.

Files of a stage folder (``r<rank>`` names the shard that wrote a file; shards of one run share the folder):

- ``fingerprint.json``: what produced the folder. Every data file carries the fingerprint in its parquet
  metadata too, and a file made under another fingerprint, or found in a folder without one, is never adopted.
- ``part-r<rank>-*.parquet``: one batch of results, as written.
- ``chunk-r<rank>-*.parquet``: parts compacted into files of at least :data:`CHUNK_SAMPLES` samples, in row
  groups that each hold whole samples.
- ``manifest-r<rank>.parquet``: the compact index of a rank's chunks (input_id -> chunk and row group), so that
  opening a store reads the manifests and the few loose parts, never every chunk.

Every file is written to a temporary name, fsync'ed and renamed, so a kill or a power loss loses at most the
batches in flight (the runner has its part files written in a writer thread while it goes on: ``write(rows,
wait=False)``; whatever reads files waits for them first). Compaction writes the chunk, then the manifest, then
deletes what it merged; a kill between those steps is rolled forward at the next open. Discarding a stale stage
renames its folder aside, then deletes it, so a kill never leaves part files without their fingerprint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import time
import uuid
from collections import defaultdict
from collections.abc import Iterable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from filelock import FileLock

from syngen.errors import StaleStore
from syngen.threads import INLINE

SCHEMA = pa.schema(
    [
        ("input_id", pa.string()),
        ("id", pa.string()),
        ("status", pa.string()),
        ("image", pa.binary()),
        ("data", pa.string()),
    ]
)
# data files are written as they are: their images are encoded already and their JSON is mostly RLE counts, which
# neither compression nor a dictionary shrinks (by 2 %), while both cost CPU time in the writer and every reader
DATA_OPTIONS: dict[str, Any] = {"compression": "none", "use_dictionary": False}
MANIFEST_SCHEMA = pa.schema([("input_id", pa.string()), ("file", pa.string()), ("row_group", pa.int32())])
CHUNK_SAMPLES = 1000  # loose samples of a rank that trigger a compaction; every chunk but a rank's last holds more
ROW_GROUP_ROWS = 256  # a chunk's row groups hold about this many rows ...
ROW_GROUP_BYTES = 32 << 20  # ... or bytes of images, whichever comes first: a read loads one row group
Row = dict[str, Any]
Location = tuple[Path, int]  # a data file and the row group holding an input id's rows
_META = b"syngen"
_RANK = re.compile(r"-r(\d+)[-.]")
log = logging.getLogger(__name__)

# the files a stage folder holds (the store's own), and what a stages/ folder holds beside the stage folders
STORE_FILES = (
    "fingerprint.json",
    "part-r*.parquet",
    "chunk-r*.parquet",
    "manifest-r*.parquet",
    "corrupt-*.parquet",
    "stale-*.parquet",
    ".tmp-*",
)

__all__ = ["SCHEMA", "Row", "StageStore", "StaleStore", "atomic_write_text", "remove_stores", "to_json"]


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
    """The files of one stage in one output folder, as seen by shard ``rank``.

    ``exclusive`` says the caller holds the whole output folder (a one-process run or an export): it may then
    clean up and compact after every rank, not only its own. ``writer`` writes the part files of
    ``write(wait=False)`` (a run's writer thread; by default they are written at once)."""

    def __init__(self, out: Path, stage: str, rank: int = 0, *, exclusive: bool = True, writer: Executor = INLINE):
        self.writer = writer  # where ``write(wait=False)`` writes part files (one thread: in order, off the caller)
        self.dir = out / "stages" / stage
        self.rank = rank
        self.exclusive = exclusive
        self.fingerprint = ""
        self._index: dict[str, Location] | None = None
        self._loose: dict[Path, int] = {}  # this rank's parts and undersized chunks -> their number of samples
        self._manifest: pa.Table | None = None  # this rank's manifest as last read or written
        self._cache: tuple[Location, pa.Table] | None = None  # the last row group read
        self._writing: dict[Path, Future[None]] = {}  # parts being written by the writer thread, oldest first

    # opening ---------------------------------------------------------------------------------------------------
    def open(self, fingerprint: str, *, drop_stale: bool = True) -> bool:
        """Make the folder ready for ``fingerprint``; False when earlier results were dropped as stale.

        With ``drop_stale=False`` a different fingerprint raises :class:`StaleStore` instead."""
        self._settle()
        self.fingerprint = fingerprint
        stages = self.dir.parent
        stages.mkdir(parents=True, exist_ok=True)
        with FileLock(str(stages / ".open.lock")):  # shards opening one folder at once: one discards, once
            for aside in stages.glob(f".stale-{self.dir.name}-*"):  # a discard that a kill interrupted
                shutil.rmtree(aside, ignore_errors=True)
            marker = self.dir / "fingerprint.json"
            found = _read_fingerprint(marker)
            kept = found == fingerprint or (found is None and not _data_files(self.dir))
            if not kept:
                if not drop_stale:
                    raise StaleStore(f"{self.dir} was made with other settings than the recipe's")
                files = _data_files(self.dir)
                log.warning(
                    "%s: the stage's settings changed; discarding %d stored result(s) in %d data file(s)",
                    self.dir.name,
                    sum(map(_row_count, files)),
                    len(files),
                )
                aside = stages / f".stale-{self.dir.name}-{uuid.uuid4().hex[:8]}"
                os.rename(self.dir, aside)  # atomic: the parts and their fingerprint go together
                shutil.rmtree(aside)
            self.dir.mkdir(exist_ok=True)
            if found != fingerprint:
                atomic_write_text(marker, json.dumps({"fingerprint": fingerprint}))
            for tmp in self.dir.glob(".tmp-*"):  # left by a kill during a write
                if self._mine(tmp.name):
                    tmp.unlink(missing_ok=True)
        self._index = None
        self._cache = None
        return kept

    def _mine(self, name: str) -> bool:
        """Whether this store may delete or rewrite the file ``name`` (its own rank's, or any when exclusive)."""
        match = _RANK.search(name)
        return self.exclusive or match is None or int(match.group(1)) == self.rank

    def index(self) -> dict[str, Location]:
        """input_id -> where its rows are (read once from the manifests and loose parts, then kept current)."""
        if self._index is None:
            self._index, self._loose, self._manifest = {}, {}, None
            manifests = sorted(self.dir.glob("manifest-r*.parquet"))
            ranks = {_rank(p.name) for p in [*_data_files(self.dir), *manifests]}
            for rank in sorted(ranks):
                self._load_rank(rank)
        return self._index

    def _load_rank(self, rank: int) -> None:
        """Index one rank's files: its manifest's chunks, then its loose parts."""
        assert self._index is not None
        mine = self.exclusive or rank == self.rank
        manifest = self.dir / f"manifest-r{rank}.parquet"
        chunks = sorted(self.dir.glob(f"chunk-r{rank}-*.parquet"))
        listed: set[str] = set()
        table, absorbed = self._read_manifest(manifest)
        if table is not None:
            listed = set(table.column("file").unique().to_pylist())
        if mine and (table is None and chunks or any(c.name not in listed for c in chunks)):
            table, absorbed = self._rebuild_manifest(rank, chunks)  # a kill mid-compaction, or a damaged manifest
            listed = set(table.column("file").unique().to_pylist())
        for name in absorbed:  # merged into a chunk already; a kill stopped their deletion
            if mine:
                (self.dir / name).unlink(missing_ok=True)
        if table is not None and table.num_rows:
            counts = self._add_manifest(table)
            if rank == self.rank:
                self._manifest = table
                self._loose.update({path: n for path, n in counts.items() if n < CHUNK_SAMPLES})
        for part in sorted(self.dir.glob(f"part-r{rank}-*.parquet")):
            if part.name in absorbed:
                continue
            ids = self._read_ids(part, mine)
            if ids is not None:
                for input_id in ids:
                    self._index[input_id] = (part, 0)
                if rank == self.rank:
                    self._loose[part] = len(set(ids))

    def _read_manifest(self, manifest: Path) -> tuple[pa.Table | None, set[str]]:
        """A manifest's table and the files its last compaction merged; (None, {}) when missing or unusable."""
        if not manifest.exists():
            return None, set()
        try:
            table = pq.ParquetFile(manifest, read_dictionary=["file"]).read()
            meta = json.loads(table.schema.metadata[_META])
        except (OSError, pa.ArrowException, KeyError, TypeError, ValueError) as err:
            log.warning("%s is unreadable (%s); rebuilding it from the chunks", manifest, err)
            return None, set()
        if meta.get("fingerprint") != self.fingerprint:
            log.warning("%s was made under another fingerprint; not used", manifest)
            return None, set()
        return table, set(meta.get("absorbed", []))

    def _add_manifest(self, table: pa.Table) -> dict[Path, int]:
        """Add a manifest's entries to the index; returns each chunk's number of samples."""
        assert self._index is not None
        files = table.column("file").combine_chunks()
        if not isinstance(files, pa.DictionaryArray):
            files = files.dictionary_encode()
        names = files.dictionary.to_pylist()
        codes = files.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        keys = (codes << 32) | table.column("row_group").combine_chunks().to_numpy().astype(np.int64)
        unique, inverse = np.unique(keys, return_inverse=True)
        locations = [(self.dir / names[key >> 32], int(key & 0xFFFFFFFF)) for key in unique.tolist()]
        self._index.update(
            zip(table.column("input_id").to_pylist(), map(locations.__getitem__, inverse.tolist()), strict=True)
        )
        return {self.dir / names[i]: int(n) for i, n in enumerate(np.bincount(codes, minlength=len(names)))}

    def _rebuild_manifest(self, rank: int, chunks: list[Path]) -> tuple[pa.Table, set[str]]:
        """Rewrite a rank's manifest from its chunk files, rolling an interrupted compaction forward."""
        entries: list[pa.Table] = []
        absorbed: set[str] = set()
        metas = {chunk: self._read_meta(chunk) for chunk in chunks}
        for meta in metas.values():
            absorbed |= set(meta.get("absorbed", [])) if meta else set()
        for chunk, meta in metas.items():
            if meta is None or chunk.name in absorbed:
                continue
            pf = pq.ParquetFile(chunk)
            for group in range(pf.num_row_groups):
                ids = pc.unique(pf.read_row_group(group, columns=["input_id"]).column(0))
                entries.append(_manifest_table(ids.to_pylist(), chunk.name, group))
        table = pa.concat_tables(entries) if entries else MANIFEST_SCHEMA.empty_table()
        self._write_manifest(rank, table, absorbed)
        return table, absorbed

    def _read_meta(self, path: Path) -> dict[str, Any] | None:
        """A data file's syngen metadata, or None (the file set aside) when damaged or made under another
        fingerprint."""
        try:
            meta = json.loads(pq.read_schema(path).metadata[_META])
        except (OSError, pa.ArrowException, KeyError, TypeError, ValueError) as err:
            self._set_aside(path, "corrupt", f"is unreadable ({err})")
            return None
        if meta.get("fingerprint") != self.fingerprint:
            self._set_aside(path, "stale", "was made under another fingerprint")
            return None
        return meta

    def _read_ids(self, part: Path, mine: bool) -> list[str] | None:
        """A loose part's input ids; None when it is gone (compacted by its shard), damaged or foreign."""
        try:
            table = pq.ParquetFile(part).read(columns=["input_id"])
        except FileNotFoundError:
            return None
        except (OSError, pa.ArrowException) as err:  # damaged outside syngen: set aside, its samples redone
            if mine:
                self._set_aside(part, "corrupt", f"is unreadable ({err})")
            return None
        meta = json.loads((table.schema.metadata or {}).get(_META, b"{}"))
        if meta.get("fingerprint", self.fingerprint) != self.fingerprint:  # parts from before 0.2 carry none
            if mine:
                self._set_aside(part, "stale", "was made under another fingerprint")
            return None
        return table.column(0).to_pylist()

    def _set_aside(self, path: Path, prefix: str, why: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            path.rename(path.with_name(f"{prefix}-{path.name}"))
        log.warning("%s %s; moved aside as %s-%s, its samples will be recomputed", path, why, prefix, path.name)

    # writing ---------------------------------------------------------------------------------------------------
    def write(self, rows: list[Row], *, wait: bool = True) -> None:
        """Append one batch of rows as a new part file, atomically; compacts once enough samples are loose.

        With ``wait=False`` the file is written (and fsync'ed) in the writer thread while the caller goes on: the
        rows count as stored at once, every call that reads files waits for the write first, and an error it met
        is raised by the store's next call. At most one such write is under way per store."""
        if not rows:
            return
        self._settle()
        index = self.index()
        table = pa.Table.from_pylist(rows, schema=self._schema())
        part = self.dir / f"part-r{self.rank}-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet"
        self._writing[part] = self.writer.submit(_atomic, part, lambda tmp: pq.write_table(table, tmp, **DATA_OPTIONS))
        if wait:
            self._settle()
        ids = {row["input_id"] for row in rows}
        for input_id in ids:
            index[input_id] = (part, 0)
        self._loose[part] = len(ids)
        if sum(self._loose.values()) >= CHUNK_SAMPLES:
            self.compact()

    def compact(self) -> None:
        """Merge this rank's loose parts and undersized chunk into one chunk (nothing to do for a single file
        under :data:`CHUNK_SAMPLES` samples)."""
        self._settle()
        self.index()
        if not self._loose or len(self._loose) == 1 and sum(self._loose.values()) < CHUNK_SAMPLES:
            return
        merged = sorted(self._loose, key=lambda p: p.name)
        chunk = self.dir / f"chunk-r{self.rank}-{time.time_ns()}-{uuid.uuid4().hex[:6]}.parquet"
        names = [p.name for p in merged]
        groups = _atomic(chunk, lambda tmp: _write_chunk(tmp, merged, self._schema(absorbed=names)))
        new = pa.concat_tables(_manifest_table(ids, chunk.name, g) for g, ids in enumerate(groups))
        old = self._manifest
        if old is not None:
            keep = pc.invert(pc.is_in(old.column("file").cast(pa.string()), pa.array(names)))
            new = pa.concat_tables([old.filter(keep).cast(MANIFEST_SCHEMA), new])
        self._write_manifest(self.rank, new, set(names))
        self._manifest = new
        for path in merged:
            path.unlink(missing_ok=True)
        assert self._index is not None
        for group, ids in enumerate(groups):
            location = (chunk, group)
            for input_id in ids:
                self._index[input_id] = location
        self._loose = {chunk: sum(len(ids) for ids in groups)} if sum(map(len, groups)) < CHUNK_SAMPLES else {}
        self._cache = None

    def _settle(self) -> None:
        """Wait for the parts being written; raises the error of one that failed (the others are waited for)."""
        writing, self._writing = self._writing, {}
        errors = [err for future in writing.values() if (err := future.exception()) is not None]
        if errors:
            raise errors[0]

    def _write_manifest(self, rank: int, table: pa.Table, absorbed: Iterable[str]) -> None:
        meta = {"fingerprint": self.fingerprint, "absorbed": sorted(absorbed)}
        table = table.cast(MANIFEST_SCHEMA).replace_schema_metadata({_META: json.dumps(meta)})
        _atomic(self.dir / f"manifest-r{rank}.parquet", lambda tmp: pq.write_table(table, tmp))

    def _schema(self, **extra: Any) -> pa.Schema:
        return SCHEMA.with_metadata({_META: json.dumps({"fingerprint": self.fingerprint, **extra})})

    # reading ---------------------------------------------------------------------------------------------------
    def drop_failed(self) -> int:
        """Remove the failed rows, so that their samples count as not done and are computed again; returns how
        many rows were dropped. Call it holding the whole folder (``exclusive``) to reach every rank's files.

        A file holding failures is replaced, atomically and under the same name, by one without them (removed when
        nothing else is left); files without failures are only read for their status column. A rank whose chunks
        change loses its manifest first and gets a rebuilt one after, so a kill in between leaves a store that
        rebuilds its index from the chunks themselves."""
        self._settle()
        self.index()
        dropped = 0
        changed: set[int] = set()
        for path in self.data_files():
            if not self._mine(path.name):
                continue
            source = pq.ParquetFile(path)
            if "failed" not in source.read(columns=["status"]).column(0).to_pylist():
                continue
            rank = _rank(path.name)
            if path.name.startswith("chunk-") and rank not in changed:
                (self.dir / f"manifest-r{rank}.parquet").unlink(missing_ok=True)
                changed.add(rank)
            kept = [
                t.filter(pc.not_equal(t["status"], "failed"))
                for t in map(source.read_row_group, range(source.num_row_groups))
            ]
            dropped += source.metadata.num_rows - sum(t.num_rows for t in kept)
            if any(t.num_rows for t in kept):
                _atomic(path, lambda tmp, kept=kept, schema=source.schema_arrow: _write_groups(tmp, kept, schema))
            else:
                path.unlink()
        for rank in sorted(changed):
            self._rebuild_manifest(rank, sorted(self.dir.glob(f"chunk-r{rank}-*.parquet")))
        self._index, self._cache = None, None
        return dropped

    def read(self, input_ids: list[str]) -> dict[str, list[Row]]:
        """The stored rows of each given input id, in written order."""
        if self._writing and any(self.index()[i][0] in self._writing for i in input_ids):
            self._settle()
        try:
            return self._read(input_ids)
        except FileNotFoundError:  # another shard compacted a file this one indexed: look again
            self._index, self._cache = None, None
            return self._read(input_ids)

    def _read(self, input_ids: list[str]) -> dict[str, list[Row]]:
        index = self.index()
        by_location: dict[Location, set[str]] = defaultdict(set)
        for input_id in input_ids:
            by_location[index[input_id]].add(input_id)
        rows: dict[str, list[Row]] = defaultdict(list)
        for location, wanted in sorted(by_location.items()):
            table = self._row_group(location)
            table = table.filter(pc.is_in(table.column("input_id"), pa.array(sorted(wanted), pa.string())))
            for row in table.to_pylist():
                rows[row["input_id"]].append(row)
        return rows

    def _row_group(self, location: Location) -> pa.Table:
        if self._cache is None or self._cache[0] != location:
            path, group = location
            self._cache = (location, pq.ParquetFile(path).read_row_group(group))
        return self._cache[1]

    def data_files(self) -> list[Path]:
        """The parts and chunks that hold this stage's results."""
        self._settle()
        return _data_files(self.dir)


def remove_stores(out: Path) -> None:
    """Delete every stage store under ``out/stages``: the files the store writes, then the folders left empty.
    Anything else found there (not syngen's) stays, with the folders holding it."""
    stages = out / "stages"
    if not stages.is_dir():
        return
    for folder in [p for p in stages.iterdir() if p.is_dir()]:  # stage folders and discards set aside (.stale-*)
        for pattern in STORE_FILES:
            for path in folder.glob(pattern):
                path.unlink(missing_ok=True)
        with contextlib.suppress(OSError):
            folder.rmdir()  # only when empty
    (stages / ".open.lock").unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        stages.rmdir()


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for pattern in ("part-*.parquet", "chunk-*.parquet") for p in folder.glob(pattern))


def _read_fingerprint(marker: Path) -> str | None:
    """The fingerprint a stage folder was made under; None when missing, "" when damaged (never matches)."""
    try:
        return str(json.loads(marker.read_text())["fingerprint"])
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return ""


def _manifest_table(ids: list[str], file: str, group: int) -> pa.Table:
    return pa.table(
        {"input_id": pa.array(ids, pa.string()), "file": [file] * len(ids), "row_group": [group] * len(ids)},
        schema=MANIFEST_SCHEMA,
    )


def _write_chunk(path: Path, sources: list[Path], schema: pa.Schema) -> list[list[str]]:
    """Copy the sources' rows into one parquet file, row groups of whole samples; returns each group's ids."""
    groups: list[list[str]] = []
    buffer: list[pa.Table] = []

    def flush() -> None:
        if buffer:
            table = pa.concat_tables(buffer)
            writer.write_table(table, row_group_size=table.num_rows)
            groups.append(pc.unique(table.column("input_id")).to_pylist())
            buffer.clear()

    with pq.ParquetWriter(path, schema, **DATA_OPTIONS) as writer:
        for source in sources:
            pf = pq.ParquetFile(source)
            for group in range(pf.num_row_groups):  # a source row group holds whole samples
                buffer.append(pf.read_row_group(group).cast(schema))
                rows = sum(t.num_rows for t in buffer)
                if rows >= ROW_GROUP_ROWS or sum(t.nbytes for t in buffer) >= ROW_GROUP_BYTES:
                    flush()
        flush()
    return groups


def _write_groups(path: Path, groups: list[pa.Table], schema: pa.Schema) -> None:
    """Write each non-empty table as its own row group (they hold whole samples), under ``schema``."""
    with pq.ParquetWriter(path, schema, **DATA_OPTIONS) as writer:
        for table in groups:
            if table.num_rows:
                writer.write_table(table, row_group_size=table.num_rows)


def _rank(name: str) -> int:
    """The rank a store file's name carries (``part-r3-...`` -> 3)."""
    match = _RANK.search(name)
    assert match is not None, name
    return int(match.group(1))


def _atomic(path: Path, write: Any) -> Any:
    """Call ``write(tmp)`` for a temporary name beside ``path``, fsync it, rename it to ``path``; returns what
    ``write`` returned."""
    tmp = path.with_name(f".tmp-{path.name}.{uuid.uuid4().hex[:8]}")  # unique: shards may write one file at once
    result = write(tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return result


def _row_count(part: Path) -> int:
    """Rows of a part file, from its footer (0 if unreadable)."""
    try:
        return pq.read_metadata(part).num_rows
    except (OSError, pa.ArrowException):
        return 0


def atomic_write_text(path: Path, text: str) -> None:
    """Write a small text file atomically (temporary file, fsync, rename)."""
    _atomic(path, lambda tmp: tmp.write_text(text))
