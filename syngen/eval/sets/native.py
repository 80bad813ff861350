"""A syngen dataset (or output folder): each ``grounding`` region with a phrase and a mask is one expression."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
from PIL import Image

from syngen.eval.sets.base import EvalSet, Expression
from syngen.eval.sets.tables import to_mask
from syngen.train.data import dataset_path, load_split


def is_syngen(spec: str) -> bool:
    """True for a syngen output or dataset folder with a ``grounding`` config."""
    return (Path(dataset_path(spec)) / "data" / "grounding").is_dir()


class SyngenSet(EvalSet):
    name = "syngen"
    layout = "syngen: a syngen dataset or output folder (its grounding config's regions)"

    def __init__(self, data: str):
        super().__init__(data)
        self._rows: dict[str, datasets.Dataset] = {}

    def rows(self, split: str) -> datasets.Dataset:
        if split not in self._rows:
            self._rows[split] = load_split(self.data, "grounding", split).select_columns(["id", "image", "regions"])
        return self._rows[split]

    def splits(self) -> list[str]:
        return []  # any split is tried: load_split names the dataset when it is not there

    def default_splits(self) -> list[str]:
        return ["train"]

    def expressions(self, split: str) -> Iterator[Expression]:
        rows = self.rows(split).select_columns(["id", "regions"])
        for start, batch in enumerate(rows.iter(batch_size=100)):
            for offset, (image_id, regions) in enumerate(zip(batch["id"], batch["regions"], strict=True)):
                for k, region in enumerate(regions or []):
                    if region.get("mask") and region.get("phrase"):
                        row = 100 * start + offset
                        yield Expression(split, f"{row}/{k}", image_id, region["phrase"], row, target=k)

    def record(self, split: str, row: Any) -> dict[str, Any]:
        return self.rows(split)[row]

    def image(self, record: dict[str, Any]) -> Image.Image:
        return record["image"].convert("RGB")

    def target(self, record: dict[str, Any], expression: Expression, height: int, width: int) -> np.ndarray:
        return to_mask(record["regions"][expression.target]["mask"], height, width)

    def mask_column(self, expression: Expression) -> str:
        return f"regions[{expression.target}].mask"
