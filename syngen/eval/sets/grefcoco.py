"""gRefCOCO from its raw G_REFER files: ``grefs(unc).json`` and the COCO ``instances.json``.

Conventions, from the G_REFER loader (henghuiding/gRefCOCO and ReLA, gres_model/data/datasets/grefer.py and
grefcoco.py) and ReLA's evaluator (gres_model/evaluation/refer_evaluation.py):

- layout: ``<root>/grefcoco/grefs(unc).json`` and ``<root>/grefcoco/instances.json``, images in
  ``<root>/images/train2014/<file_name>``; ``--data`` may name ``<root>`` or its ``grefcoco`` folder (images are
  also looked for in ``images/`` and ``train2014/`` beside the JSON files). The pickled ``grefs(unc).p`` is never
  read (nothing is unpickled);
- a ref: ``ref_id``, ``image_id``, ``split`` (train, val, testA, testB), ``ann_id`` (a list of COCO annotation
  ids, or one id; ``[-1]`` with ``no_target: true`` for an expression that refers to nothing), ``sentences``
  (``[{"sent_id", "sent", "raw", "tokens"}]``, each one expression; the text is ``raw``, as ReLA feeds it);
- the target: the union of the ref's annotations' masks (``getMaskByRef(merge=True)``), crowd annotations left
  out; polygons (a list of lists) rasterised with pycocotools at the ``instances.json`` image's height and
  width, RLE decoded; a no-target expression's target is empty.

Metrics per split: gIoU, cIoU, N-acc, T-acc, Prec@X (:func:`syngen.metrics.gres_metrics`). The policy has no
"no target" output: an empty predicted mask is its "no target" answer.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from syngen.errors import DatasetError
from syngen.eval.sets.base import EvalSet, Expression
from syngen.eval.sets.tables import to_mask
from syngen.metrics import gres_metrics

REFS = "grefs(unc).json"


def annotation_folder(data: str) -> Path | None:
    """The folder holding ``grefs(unc).json`` and ``instances.json``: ``data`` or ``data/grefcoco``."""
    for folder in (Path(data), Path(data) / "grefcoco"):
        if (folder / REFS).is_file() and (folder / "instances.json").is_file():
            return folder
    return None


class GrefcocoSet(EvalSet):
    name = "grefcoco"
    layout = (
        f"grefcoco: a folder with {REFS} and instances.json (or its grefcoco/ subfolder), images in images/train2014"
    )

    def __init__(self, data: str):
        super().__init__(data)
        folder = annotation_folder(data)
        if folder is None:
            raise DatasetError(f"{data}: no {REFS} and instances.json here or in {Path(data) / 'grefcoco'}")
        try:
            self.refs: list[dict[str, Any]] = json.loads((folder / REFS).read_text(encoding="utf-8"))
            instances = json.loads((folder / "instances.json").read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError) as err:
            raise DatasetError(f"{folder}: {REFS} or instances.json is not valid JSON: {err}") from None
        self.images = {image["id"]: image for image in instances.get("images", [])}
        self.annotations = {ann["id"]: ann for ann in instances.get("annotations", [])}
        roots = [folder / "images" / "train2014", folder.parent / "images" / "train2014", folder / "images"]
        self.image_dirs = [*roots, folder / "train2014"]

    def splits(self) -> list[str]:
        return list(dict.fromkeys(ref["split"] for ref in self.refs))

    def default_splits(self) -> list[str]:
        """The evaluation splits: all but ``train``."""
        return [split for split in self.splits() if split != "train"] or self.splits()

    def expressions(self, split: str) -> Iterator[Expression]:
        for ref in self.refs:
            if ref["split"] != split:
                continue
            ann_ids = ref["ann_id"] if isinstance(ref["ann_id"], list) else [ref["ann_id"]]
            targets = () if ref.get("no_target") or ann_ids == [-1] else tuple(ann_ids)
            for j, sentence in enumerate(ref["sentences"]):
                text = sentence.get("raw") or sentence.get("sent")
                if text:
                    key = f"{ref['ref_id']}/{sentence.get('sent_id', j)}"
                    yield Expression(split, key, str(ref["image_id"]), text, ref["image_id"], target=targets)

    def record(self, split: str, row: Any) -> dict[str, Any]:
        if row not in self.images:
            raise DatasetError(f"{self.data}: image {row} of {REFS} is not in instances.json")
        return self.images[row]

    def image(self, record: dict[str, Any]) -> Image.Image:
        for folder in self.image_dirs:
            if (folder / record["file_name"]).is_file():
                return Image.open(folder / record["file_name"]).convert("RGB")
        looked = ", ".join(str(folder) for folder in self.image_dirs)
        raise DatasetError(f"{self.data}: image {record['file_name']} not found; looked in {looked}")

    def target(self, record: dict[str, Any], expression: Expression, height: int, width: int) -> np.ndarray:
        mask = np.zeros((record["height"], record["width"]), bool)  # as G_REFER: the size instances.json states
        for ann_id in expression.target:
            ann = self.annotations.get(ann_id)
            if ann is None:
                raise DatasetError(f"{self.data}: annotation {ann_id} of {REFS} is not in instances.json")
            if not ann.get("iscrowd"):
                mask |= to_mask(ann["segmentation"], record["height"], record["width"])
        return mask

    def mask_column(self, expression: Expression) -> str:
        return f"segmentation of instances.json annotations {', '.join(map(str, expression.target))}"

    def metrics(
        self, intersections: Sequence[int], unions: Sequence[int], predicted: Sequence[int], targets: Sequence[int]
    ) -> dict[str, float]:
        return gres_metrics(intersections, unions, predicted, targets)
