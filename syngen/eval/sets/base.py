"""What every benchmark reader gives the scorer: expressions (cheap to list, no image decoded), then for the ones
to score their image and target mask, and the benchmark's own metrics."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
from PIL import Image

from syngen.metrics import ris_metrics


@dataclass(frozen=True)
class Expression:
    """One referring expression to score.

    ``key`` is unique within its split and the same on every run (predictions are stored under it, so a rerun
    skips it); ``image_id`` is the same for every expression on one image (the embedding cache's key); ``row``
    names the reader's record that holds the image, ``target`` which object(s) of it the expression refers to.
    """

    split: str
    key: str
    image_id: str
    phrase: str
    row: Any
    target: Any = None


class EvalSet(ABC):
    """A benchmark in one published layout. ``name`` is its ``--format`` value, ``layout`` one line saying how
    it is recognised (for the error on a dataset that matches no layout)."""

    name: ClassVar[str]
    layout: ClassVar[str]

    def __init__(self, data: str):
        self.data = data

    @abstractmethod
    def splits(self) -> list[str]:
        """The splits there are; an empty list when they cannot be listed (then any name is tried)."""

    def default_splits(self) -> list[str]:
        """The splits scored when ``--split`` is not given: all of them."""
        return self.splits()

    @abstractmethod
    def expressions(self, split: str) -> Iterator[Expression]:
        """Every expression of ``split``, in a stable order, without decoding an image or a mask."""

    @abstractmethod
    def record(self, split: str, row: Any) -> Any:
        """The record ``row`` of ``split`` (read once per batch for all its expressions)."""

    @abstractmethod
    def image(self, record: Any) -> Image.Image:
        """The record's image, RGB."""

    @abstractmethod
    def target(self, record: Any, expression: Expression, height: int, width: int) -> np.ndarray:
        """The (height, width) bool target mask of ``expression`` (all False for a no-target expression); raises
        ValueError for a mask that is not one of that size (:func:`~syngen.eval.sets.tables.to_mask`)."""

    def mask_column(self, expression: Expression) -> str:
        """Where ``expression``'s target mask is in its record, for the error on a bad mask."""
        return "segmentation"

    def metrics(
        self, intersections: Sequence[int], unions: Sequence[int], predicted: Sequence[int], targets: Sequence[int]
    ) -> dict[str, float]:
        """The benchmark's metrics from each expression's I, U, predicted and target areas (default: oIoU, mIoU,
        gIoU, Prec@X)."""
        return ris_metrics(intersections, unions)
