"""What the COCO and YOLO exporters share: the folder they own, the images, and the category of a phrase.

Each format is written to ``<out>/export/<format>/`` through :func:`syngen.owned.replacing`: built in a
temporary folder beside it and renamed into place when complete, so a kill never leaves half an export, and a
rerun replaces the previous one. A folder of the same name that syngen did not write (no ``.syngen`` marker) is
left alone and the export refused.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from syngen.errors import UsageError
from syngen.stats import read_rows

EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif", "GIF": "gif"}


@dataclass
class ImageRow:
    """One grounding row to export: its id, encoded image (as stored), file extension, size and regions."""

    id: str
    data: bytes
    extension: str
    width: int
    height: int
    regions: list[dict[str, Any]]

    @property
    def file_name(self) -> str:
        return f"{self.id}.{self.extension}"


def image_rows(dataset_dir: Path) -> Iterator[ImageRow]:
    """The grounding rows of ``dataset_dir`` that hold an image, one at a time (a batch of rows in memory)."""
    if not (Path(dataset_dir) / "data" / "grounding").is_dir():
        raise UsageError(f"{dataset_dir}: no grounding config to export; run a recipe (or `syngen export OUT`) first")
    for row in read_rows(dataset_dir, "grounding", ["id", "image", "width", "height", "regions"], batch_size=64):
        if not row["image"] or not row["image"].get("bytes"):
            continue
        data = row["image"]["bytes"]
        with Image.open(io.BytesIO(data)) as image:
            extension = EXTENSIONS.get(image.format or "", "png")
            width, height = image.size
        yield ImageRow(row["id"], data, extension, width, height, row["regions"] or [])


@dataclass
class Categories:
    """One category per distinct phrase (lower-cased, spaces collapsed), numbered from ``first`` in the order the
    phrases first appear."""

    first: int = 1
    ids: dict[str, int] = field(default_factory=dict)

    def id(self, phrase: str | None) -> int:
        """The category id of ``phrase`` (a new one for a phrase not seen before)."""
        return self.ids.setdefault(category_name(phrase), self.first + len(self.ids))


def category_name(phrase: str | None) -> str:
    """A phrase as a category name: lower-cased, runs of spaces as one; "object" for an empty phrase."""
    return " ".join((phrase or "").lower().split()) or "object"
