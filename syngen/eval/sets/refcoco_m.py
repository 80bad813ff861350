"""moondream/refcoco-m as published: RefCOCO (UNC) val re-segmented pixel-accurately.

Conventions, from its dataset card (huggingface.co/datasets/moondream/refcoco-m) and the readers of it found
with the search tool (MaxShroyer/benchmark-samtok benchmark.py ``iter_expressions``; lmms-eval's refcoco_m
task ``_get_first_sample``):

- one row per image: ``image`` (Image), ``image_id``, ``file_name``, and ``samples``: a list with one entry per
  object, each with ``sentences`` (list of strings), ``mask`` (COCO RLE ``{"counts": str, "size": [h, w]}``)
  and ``bbox`` (``[x, y, w, h]``);
- one split, ``validation`` (``data/validation-NNNNN-of-NNNNN.parquet``).

Protocol, as the card states it: every (image, sentence) pair of every sample is one example; IoU = |M̂ ∩ M| /
|M̂ ∪ M| and mIoU = the mean over all N examples (the headline metric; oIoU and Prec@X are reported beside it).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets
import numpy as np
from PIL import Image

from syngen.eval.sets.base import EvalSet, Expression
from syngen.eval.sets.tables import sentences, to_image, to_mask


class RefcocoMSet(EvalSet):
    name = "refcoco-m"
    layout = "refcoco-m: moondream/refcoco-m parquet (columns image, samples: [{sentences, mask: RLE, bbox}])"

    def __init__(self, data: str, tables: dict[str, datasets.Dataset]):
        super().__init__(data)
        self.tables = tables

    @staticmethod
    def matches(columns: set[str]) -> bool:
        return {"image", "samples"} <= columns

    def splits(self) -> list[str]:
        return list(self.tables)

    def expressions(self, split: str) -> Iterator[Expression]:
        table = self.tables[split]
        ids = ["image_id"] if "image_id" in table.column_names else []
        for start, batch in enumerate(table.select_columns(["samples", *ids]).iter(batch_size=100)):
            for offset, samples in enumerate(batch["samples"]):
                row = 100 * start + offset
                image_id = str(batch["image_id"][offset]) if ids else f"row{row}"
                for s, sample in enumerate(samples or []):
                    for j, text in enumerate(sentences(sample.get("sentences"))):
                        yield Expression(split, f"{row}/{s}/{j}", image_id, text, row, target=s)

    def record(self, split: str, row: Any) -> dict[str, Any]:
        return self.tables[split].select_columns(["image", "samples"])[row]

    def image(self, record: dict[str, Any]) -> Image.Image:
        return to_image(record["image"])

    def target(self, record: dict[str, Any], expression: Expression, height: int, width: int) -> np.ndarray:
        return to_mask(record["samples"][expression.target]["mask"], height, width)

    def mask_column(self, expression: Expression) -> str:
        return f"samples[{expression.target}].mask"
