"""Referring-segmentation benchmarks as they are published, for ``syngen eval ris``: one reader per layout
(one module each), found from the dataset's files or columns, or named with ``--format``.

Adding a layout is one module with an :class:`~syngen.eval.sets.base.EvalSet` subclass and one line in
:data:`FORMATS` (detection tries them in that order).
"""

from __future__ import annotations

from syngen.errors import DatasetError
from syngen.eval.sets.base import EvalSet, Expression
from syngen.eval.sets.columns import Columns, ColumnsSet
from syngen.eval.sets.grefcoco import GrefcocoSet, annotation_folder
from syngen.eval.sets.native import SyngenSet, is_syngen
from syngen.eval.sets.refcoco import RefcocoSet
from syngen.eval.sets.refcoco_m import RefcocoMSet
from syngen.eval.sets.tables import load_tables

__all__ = ["FORMATS", "Columns", "EvalSet", "Expression", "open_evalset"]

# --format name -> reader, in detection order
FORMATS: dict[str, type[EvalSet]] = {
    "syngen": SyngenSet,
    "grefcoco": GrefcocoSet,
    "refcoco": RefcocoSet,
    "refcoco-m": RefcocoMSet,
    "columns": ColumnsSet,
}


def open_evalset(data: str, format: str | None = None, columns: Columns | None = None) -> EvalSet:
    """The reader for ``data`` in layout ``format`` (None: detected from its files, then its columns).

    Raises :class:`~syngen.errors.DatasetError` with one paragraph listing the layouts and the columns found when
    ``data`` matches none (or not the one named).
    """
    columns = columns or Columns()
    if format is not None and format not in FORMATS:
        raise DatasetError(f"--format {format!r} is not a known layout; choose one of: {', '.join(FORMATS)}")
    if format == "syngen" or (format is None and is_syngen(data)):
        return SyngenSet(data)
    if format == "grefcoco" or (format is None and annotation_folder(data) is not None):
        return GrefcocoSet(data)
    tables = load_tables(data)
    found = set().union(*(table.column_names for table in tables.values()))
    if format in (None, "refcoco") and RefcocoSet.matches(found):
        return RefcocoSet(data, tables)
    if format in (None, "refcoco-m") and RefcocoMSet.matches(found):
        return RefcocoMSet(data, tables)
    if format in (None, "columns") and ColumnsSet.matches(found, columns):
        return ColumnsSet(data, tables, columns)
    wanted = f"is not in the {format} layout" if format else "matches no known layout"
    layouts = "; ".join(f"{cls.layout}" for cls in FORMATS.values())
    raise DatasetError(
        f"{data} {wanted}: its columns are {', '.join(sorted(found)) or 'none'}. Known layouts: {layouts} (here "
        f"--image-column {columns.image}, --text-column {columns.text}, --mask-column {columns.mask}). Name the "
        "layout with --format, or give the column options."
    )
