"""lmms-lab/RefCOCO, RefCOCOplus and RefCOCOg as published (the parquet files lmms-eval reads).

Conventions, from the dataset cards' ``dataset_info`` (huggingface.co/datasets/lmms-lab/RefCOCO, .../RefCOCOg)
and lmms-eval's tasks (EvolvingLMMs-Lab/lmms-eval, lmms_eval/tasks/refcoco/utils.py):

- one row per referred object: ``question_id`` (string), ``image`` (Image), ``question`` (string, a captioning
  prompt, not used here), ``answer`` (list of strings: the object's referring expressions), ``segmentation``
  (list of float32: ONE flat polygon ``[x1, y1, x2, y2, ...]`` in pixels, which lmms-eval draws with
  ``ImageDraw.polygon(seg)``), ``bbox`` (float32 ``[x, y, w, h]``), ``iscrowd`` (int8), ``file_name`` (the COCO
  image's file name, the same for every object on one image);
- splits ``val``, ``test``, ``testA``, ``testB`` (RefCOCO, RefCOCO+) and ``val``, ``test`` (RefCOCOg), as
  ``data/<split>-NNNNN-of-NNNNN.parquet``.

Each (object, sentence) is one expression; its target is the polygon rasterised with pycocotools at the image's
size. Metrics per split: oIoU (= cIoU), mIoU, gIoU, Prec@X.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import datasets
import numpy as np
from PIL import Image

from syngen.eval.sets.base import EvalSet, Expression
from syngen.eval.sets.tables import to_image, to_mask

COLUMNS = ("question_id", "image", "question", "answer", "segmentation", "bbox", "iscrowd", "file_name")


class RefcocoSet(EvalSet):
    name = "refcoco"
    layout = (
        "refcoco: lmms-lab/RefCOCO, RefCOCOplus, RefCOCOg parquet (columns " + ", ".join(COLUMNS) + "; a flat "
        "polygon per object, a list of sentences in 'answer')"
    )

    def __init__(self, data: str, tables: dict[str, datasets.Dataset]):
        super().__init__(data)
        self.tables = tables

    @staticmethod
    def matches(columns: set[str]) -> bool:
        return set(COLUMNS) <= columns

    def splits(self) -> list[str]:
        return list(self.tables)

    def expressions(self, split: str) -> Iterator[Expression]:
        rows = self.tables[split].select_columns(["answer", "file_name"])
        for start, batch in enumerate(rows.iter(batch_size=1000)):
            for offset, (answers, file_name) in enumerate(zip(batch["answer"], batch["file_name"], strict=True)):
                row = 1000 * start + offset
                for j, text in enumerate(answers or []):
                    if text:
                        yield Expression(split, f"{row}/{j}", file_name, text, row)

    def record(self, split: str, row: Any) -> dict[str, Any]:
        return self.tables[split].select_columns(["image", "segmentation"])[row]

    def image(self, record: dict[str, Any]) -> Image.Image:
        return to_image(record["image"])

    def target(self, record: dict[str, Any], expression: Expression, height: int, width: int) -> np.ndarray:
        return to_mask(record["segmentation"], height, width)  # one flat polygon
