"""What the COCO and YOLO exporters share: the folder they own, the images, and the category of a phrase.

Each format is written to ``<out>/export/<format>/``: built in a temporary folder beside it and renamed into place
when complete, so a kill never leaves half an export, and a rerun replaces the previous one. A folder is only
replaced when it holds :data:`MARKER` (written by this module): a folder of the same name that syngen did not
write is left alone and the export refused.
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from syngen.errors import UsageError
from syngen.stats import read_rows

MARKER = ".syngen-export"
EXTENSIONS = {"PNG": "png", "JPEG": "jpg", "WEBP": "webp", "BMP": "bmp", "TIFF": "tif", "GIF": "gif"}


@contextmanager
def replacing(target: Path) -> Iterator[Path]:
    """Yields an empty temporary folder (holding :data:`MARKER`) beside ``target``; when the block ends without
    an error it replaces ``target``, else it is removed. Raises :class:`UsageError` when ``target`` exists and is
    not a syngen export."""
    target = Path(target)
    if target.exists() and not (target / MARKER).is_file():
        raise UsageError(
            f"{target} exists and was not written by `syngen export` (it has no {MARKER} file); move it away, "
            "syngen replaces only the export folders it wrote"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    for stale in target.parent.glob(f".{target.name}.*"):  # left by a killed export
        if (stale / MARKER).is_file():
            shutil.rmtree(stale, ignore_errors=True)
    building = target.with_name(f".{target.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}")
    building.mkdir()  # (not tempfile.mkdtemp: its folder is private, 0700, whatever the umask)
    try:
        (building / MARKER).write_text("written by `syngen export`; a rerun replaces this folder\n", encoding="utf-8")
        yield building
        old = building.with_name(f".{target.name}.old-{os.getpid()}")
        if target.exists():
            target.rename(old)
        building.rename(target)
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(building, ignore_errors=True)
        raise


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
