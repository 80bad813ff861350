"""A RefCOCO-style table of any other layout, read through the column options: an image column, an expression
column (a string, or a list of strings or of dicts with ``sent``/``raw``; each sentence is one expression) and a
mask column (COCO RLE or polygons). Metrics: oIoU, mIoU, gIoU, Prec@X."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import datasets
import numpy as np
from PIL import Image

from syngen.eval.sets.base import EvalSet, Expression
from syngen.eval.sets.tables import sentences, to_image, to_mask


@dataclass(frozen=True)
class Columns:
    """The columns a ``columns`` table is read through (``--image-column``, ``--text-column``, ``--mask-column``)."""

    image: str = "image"
    text: str = "sentences"
    mask: str = "segmentation"


class ColumnsSet(EvalSet):
    name = "columns"
    layout = "columns: any table with the --image-column, --text-column and --mask-column columns"

    def __init__(self, data: str, tables: dict[str, datasets.Dataset], columns: Columns):
        super().__init__(data)
        self.tables = tables
        self.columns = columns

    @staticmethod
    def matches(found: set[str], columns: Columns) -> bool:
        return {columns.image, columns.text, columns.mask} <= found

    def splits(self) -> list[str]:
        return list(self.tables)

    def expressions(self, split: str) -> Iterator[Expression]:
        texts = self.tables[split].select_columns([self.columns.text])
        for start, batch in enumerate(texts.iter(batch_size=1000)):
            for offset, cell in enumerate(batch[self.columns.text]):
                row = 1000 * start + offset
                for j, text in enumerate(sentences(cell)):
                    yield Expression(split, f"{row}/{j}", f"row{row}", text, row)

    def record(self, split: str, row: Any) -> dict[str, Any]:
        return self.tables[split].select_columns([self.columns.image, self.columns.mask])[row]

    def image(self, record: dict[str, Any]) -> Image.Image:
        return to_image(record[self.columns.image])

    def target(self, record: dict[str, Any], expression: Expression, height: int, width: int) -> np.ndarray:
        return to_mask(record[self.columns.mask], height, width)

    def mask_column(self, expression: Expression) -> str:
        return self.columns.mask
