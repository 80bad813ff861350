"""The source stage: enumerates seed items and loads them.

Kinds: ``images`` (a folder of jpg/png/webp, recursive), ``dataset`` (a local Hugging Face dataset folder saved
with ``save_to_disk``, or parquet files, with an image column), ``captions`` (a .txt file, one caption per
line, or a .jsonl file with a caption field). Input: nothing. Output columns: ``id``, ``source`` {kind, item}
and, by kind, ``image`` (encoded bytes), ``width``, ``height``, ``caption``.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

from datasets import Image as ImageFeature
from datasets import Value
from PIL import Image
from pydantic import Field

from syngen.export.schema import Column
from syngen.sample import Failure, Sample, image_bytes, make_id
from syngen.stages.base import Result, SourceStage, StageConfig

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp")


class SourceConfig(StageConfig):
    kind: Literal["images", "dataset", "captions"] = Field(description="What `path` holds.")
    path: str = Field(description="Folder of images, dataset folder or parquet file/folder, or captions file.")
    image_column: str = Field("image", description="dataset: the column holding images.")
    caption_column: str | None = Field(None, description="dataset: a column of captions to keep (skips captioning).")
    caption_field: str = Field("caption", description="captions .jsonl: the field holding the caption.")
    split: str = Field("train", description="dataset: the split to read.")
    limit: int | None = Field(None, ge=1, description="Use at most this many seed items (`--limit` overrides).")
    batch_size: int = Field(32, ge=1, description="Items loaded per batch.")


class Source(SourceStage[SourceConfig]):
    """Seed items in a stable order; ``process`` loads and checks each (a bad file is a per-item failure)."""

    name = "source"
    Config = SourceConfig
    publishes = {
        "image": Column(ImageFeature(), "the seed image, as read"),
        "width": Column(Value("int32"), "image width in pixels"),
        "height": Column(Value("int32"), "image height in pixels"),
        "caption": Column(Value("string"), "the caption from the dataset's `caption_column`"),
    }

    @classmethod
    def provides(cls, config: SourceConfig) -> tuple[str, ...]:
        if config.kind == "captions":
            return ("source", "caption")
        return ("source", "image", "width", "height") + (("caption",) if config.caption_column else ())

    def fingerprint(self) -> dict[str, Any]:
        config = self.config.model_dump(mode="json", exclude={"batch_size", "limit"})
        config["path"] = str(self.ctx.resolve_path(self.config.path).resolve())
        return {"stage": self.name, "config": config}

    def items(self, limit: int | None = None) -> Iterator[Sample]:
        """Seed items ``{"id", "source": {"kind", "item"}}``, at most ``limit`` (or the recipe's limit)."""
        cfg = self.config
        limit = limit or cfg.limit
        keys = {"images": self._image_keys, "dataset": self._dataset_keys, "captions": self._caption_keys}[cfg.kind]
        for n, item in enumerate(keys()):
            if limit is not None and n >= limit:
                return
            yield {"id": make_id("source", cfg.kind, item), "source": {"kind": cfg.kind, "item": item}}

    def process(self, samples: list[Sample], model: None = None) -> list[Result]:
        load = {"images": self._load_image_file, "dataset": self._load_row, "captions": self._load_caption}
        return [load[self.config.kind](s["source"]["item"]) for s in samples]

    # images ------------------------------------------------------------------------------------------------
    def _root(self) -> Path:
        return self.ctx.resolve_path(self.config.path)

    def _image_keys(self) -> Iterator[str]:
        root = self._root()
        files = (p for p in root.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
        yield from sorted(p.relative_to(root).as_posix() for p in files)

    def _load_image_file(self, item: str) -> Result:
        return _checked_image((self._root() / item).read_bytes())

    # dataset -----------------------------------------------------------------------------------------------
    def _dataset(self) -> Any:
        if not hasattr(self, "_ds"):
            self._ds = _open_dataset(self._root(), self.config.split)
        return self._ds

    def _dataset_keys(self) -> Iterator[str]:
        yield from (str(i) for i in range(len(self._dataset())))

    def _load_row(self, item: str) -> Result:
        cfg = self.config
        row = self._dataset()[int(item)]
        value = row[cfg.image_column]
        if isinstance(value, Image.Image):
            data = image_bytes(value, value.format or "PNG")
        elif isinstance(value, dict):
            data = value.get("bytes") or self._image_path(value["path"]).read_bytes()
        elif isinstance(value, str):  # a column of file paths
            data = self._image_path(value).read_bytes()
        else:
            data = value
        result = _checked_image(data)
        if cfg.caption_column and isinstance(result, dict):
            result["caption"] = str(row[cfg.caption_column] or "")
        return result

    def _image_path(self, value: str) -> Path:
        """A path from a dataset row: absolute, or relative to the dataset's folder."""
        root = self._root()
        return Path(value) if Path(value).is_absolute() else (root if root.is_dir() else root.parent) / value

    # captions ----------------------------------------------------------------------------------------------
    def _caption_lines(self) -> list[str]:
        if not hasattr(self, "_lines"):
            self._lines = self._root().read_text(encoding="utf-8", errors="replace").splitlines()
        return self._lines

    def _caption_keys(self) -> Iterator[str]:
        yield from (str(i) for i, line in enumerate(self._caption_lines()) if line.strip())

    def _load_caption(self, item: str) -> Result:
        line = self._caption_lines()[int(item)]
        if self._root().suffix.lower() == ".jsonl":
            try:
                caption = json.loads(line)[self.config.caption_field]
            except (ValueError, KeyError, TypeError) as err:
                return Failure("bad_json", f"line {int(item) + 1}: {type(err).__name__}: {err}")
        else:
            caption = line
        if not isinstance(caption, str) or not caption.strip():
            return Failure("empty_caption", f"line {int(item) + 1} has no caption")
        return {"caption": caption.strip()}


def _open_dataset(path: Path, split: str) -> Any:
    """A local dataset: a save_to_disk folder (Dataset or DatasetDict), or parquet file(s)."""
    import datasets

    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        ds = datasets.load_from_disk(str(path))
        return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
    files = [str(path)] if path.is_file() else sorted(str(p) for p in path.rglob("*.parquet"))
    return datasets.load_dataset("parquet", data_files=files, split="train")


def _checked_image(data: bytes | None) -> Result:
    """``{"image", "width", "height"}`` for bytes that decode fully as an image, else a Failure saying why."""
    if not data:
        return Failure("bad_image", "empty file")
    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            width, height = img.size
    except Exception as err:  # PIL raises many types for corrupt data
        return Failure("bad_image", f"cannot decode image: {type(err).__name__}: {err}")
    return {"image": data, "width": width, "height": height}
