"""What a stage publishes in the exported dataset: a column's ``datasets`` feature type and the card's line about
it, and the feature types stages share. Below the stages, which declare columns, and the export, which builds the
configs' schemas from them (:mod:`syngen.export.schema`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from datasets import List, Value

BOX = List(Value("float32"), length=4)  # [x1, y1, x2, y2] in pixels
RLE = {"size": List(Value("int32"), length=2), "counts": Value("string")}  # COCO RLE, counts as text


@dataclass(frozen=True)
class Column:
    """A published column: its ``datasets`` feature type and the dataset card's line about it."""

    feature: Any
    doc: str
