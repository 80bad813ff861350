"""The source stage: enumerates seed items and loads them.

Kinds: ``images`` (a folder, recursive: every file with an image extension Pillow knows, plus any other file
Pillow can identify; files skipped are listed with their reason in :attr:`Source.skipped`), ``dataset`` (a local
Hugging Face dataset folder saved with ``save_to_disk``, or parquet files, with an image column), ``captions``
(a .txt file, one caption per line, or a .jsonl file with a caption field; a line that cannot be used is a
failure naming its line number). Input: nothing. Output columns: ``id``, ``source`` {kind, item} and, by kind,
``image`` (encoded bytes), ``width``, ``height``, ``caption``.

Images are checked by decoding them fully. JPEG, PNG and WebP files in RGB or grayscale keep their bytes; any
other image (GIF, BMP, TIFF, CMYK, 16-bit, palette or alpha, EXIF-rotated) is stored as an upright RGB PNG of
its first frame. Decompression bombs, truncated and undecodable files are failures with their reason.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import numpy as np
from datasets import Image as ImageFeature
from datasets import Value
from PIL import Image, ImageOps
from pydantic import Field

from syngen.columns import Column
from syngen.errors import excerpt, printable
from syngen.sample import Failure, Sample, image_bytes, keep_decoded, make_id
from syngen.settings import SomePath
from syngen.stages.base import Context, Outcome, SourceStage, StageConfig

KEPT_AS_IS = {"JPEG": ("RGB", "L"), "PNG": ("RGB", "L"), "WEBP": ("RGB",)}  # format -> modes stored unchanged
ORIENTATION = 0x0112  # the EXIF tag


class SourceConfig(StageConfig):
    kind: Literal["images", "dataset", "captions"] = Field(description="What `path` holds.")
    path: SomePath = Field(description="Folder of images, dataset folder or parquet file/folder, or captions file.")
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

    def __init__(self, config: SourceConfig, ctx: Context):
        super().__init__(config, ctx)
        self.skipped: dict[str, str] = {}  # images: file under `path` -> why it is not a seed item
        self._files: dict[str, Path] = {}  # images: seed item (the printable relative path) -> the file
        _check_path(config, self._root())

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

    def process(self, samples: list[Sample], model: None = None) -> list[Outcome]:
        load = {"images": self._load_image_file, "dataset": self._load_row, "captions": self._load_caption}
        return [load[self.config.kind](s["source"]["item"]) for s in samples]

    # images ------------------------------------------------------------------------------------------------
    def _root(self) -> Path:
        return self.ctx.resolve_path(self.config.path)

    def _image_keys(self) -> Iterator[str]:
        """Relative paths of the image files under the folder, sorted, as :func:`~syngen.errors.printable` shows
        them (a name that is not UTF-8 gets ``\\xNN`` escapes, a newline ``\\n``); other files go to
        :attr:`skipped`."""
        root = self._root()
        extensions = {ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
        self._files, self.skipped, seen = {}, {}, {os.path.realpath(root)}
        for folder, dirs, names in os.walk(root, followlinks=True):
            for name in list(dirs):  # a symlinked folder is followed once: a link back up would loop forever
                real = os.path.realpath(os.path.join(folder, name))
                if real in seen:
                    dirs.remove(name)
                    self.skipped[_item(root, Path(folder, name))] = f"symlink loop (to {printable(real)})"
                seen.add(real)
            for name in names:
                path = Path(folder, name)
                item = _item(root, path)
                reason = _not_an_image(path, extensions)
                if reason is None and item in self._files:  # e.g. a file literally named "caf\\xe9.png" beside café
                    reason = "another file's name reads the same once made printable"
                if reason:
                    self.skipped[item] = reason
                else:
                    self._files[item] = path
        yield from sorted(self._files)

    def _load_image_file(self, item: str) -> Outcome:
        return _checked_image(self._files.get(item, self._root() / item).read_bytes())

    # dataset -----------------------------------------------------------------------------------------------
    def _dataset(self) -> Any:
        if not hasattr(self, "_ds"):
            self._ds = _open_dataset(self._root(), self.config.split)
        return self._ds

    def _dataset_keys(self) -> Iterator[str]:
        yield from (str(i) for i in range(len(self._dataset())))

    def _load_row(self, item: str) -> Outcome:
        cfg = self.config
        row = self._dataset()[int(item)]
        value = row[cfg.image_column]
        try:
            if isinstance(value, Image.Image):
                data = image_bytes(value, value.format or "PNG")
            elif isinstance(value, dict):
                data = value.get("bytes") or self._image_path(value["path"]).read_bytes()
            elif isinstance(value, str):  # a column of file paths
                data = self._image_path(value).read_bytes()
            else:
                data = value
        except _OutsideDataset as err:
            return Failure("outside_dataset", str(err))
        result = _checked_image(data)
        if cfg.caption_column and isinstance(result, dict):
            result["caption"] = str(row[cfg.caption_column] or "")
        return result

    def _image_path(self, value: str) -> Path:
        """A path from a dataset row, relative to the dataset's folder (or absolute) and inside it once links are
        resolved; one outside raises :class:`_OutsideDataset`: a row cannot pull in any file of the machine."""
        root = self._root()
        folder = (root if root.is_dir() else root.parent).resolve()
        path = (folder / value).resolve()
        if not path.is_relative_to(folder):
            raise _OutsideDataset(f"image path {printable(value, 200)} is outside the dataset's folder {folder}")
        return path

    # captions ----------------------------------------------------------------------------------------------
    def _caption_lines(self) -> list[bytes]:
        if not hasattr(self, "_lines"):
            self._lines = self._root().read_bytes().splitlines()
        return self._lines

    def _caption_keys(self) -> Iterator[str]:
        yield from (str(i) for i in range(len(self._caption_lines())))

    def _load_caption(self, item: str) -> Outcome:
        """The caption of one line; a blank, non-UTF-8 or malformed line is a failure naming its line number."""
        number, raw = int(item) + 1, self._caption_lines()[int(item)]
        try:
            line = raw.decode("utf-8").removeprefix("\ufeff")
        except UnicodeDecodeError as err:
            return Failure(
                "bad_encoding", f"line {number}: not UTF-8 (byte {raw[err.start]:#04x} at column {err.start + 1})"
            )
        if not line.strip():
            return Failure("empty_caption", f"line {number} is blank")
        caption: Any = line
        if self._root().suffix.lower() == ".jsonl":
            field = self.config.caption_field
            try:
                caption = json.loads(line)[field]
            except ValueError as err:
                return Failure("bad_json", f"line {number}: not JSON: {err}")
            except (KeyError, TypeError):
                return Failure("bad_json", f"line {number}: no {field!r} field in {excerpt(line, 80)}")
        if not isinstance(caption, str) or not caption.strip():
            return Failure("empty_caption", f"line {number} has no caption: {excerpt(line, 80)}")
        return {"caption": caption.strip()}


class _OutsideDataset(ValueError):
    """A dataset row's image path that leads outside the dataset's folder."""


def _item(root: Path, path: Path) -> str:
    """The seed item naming ``path``: its path relative to ``root``, printable."""
    return printable(path.relative_to(root).as_posix())


def _check_path(config: SourceConfig, root: Path) -> None:
    """Raises ValueError when ``path`` is not the kind of thing ``kind`` reads (a missing path is the recipe's
    check), or names a split the dataset lacks."""
    if not root.exists():
        return
    if config.kind == "images" and not root.is_dir():
        raise ValueError(f"path {root} is a file, but kind: images reads a folder of images")
    if config.kind == "captions" and not root.is_file():
        raise ValueError(f"path {root} is a folder, but kind: captions reads one .txt or .jsonl file")
    if config.kind == "dataset" and root.is_dir():
        splits_file = root / "dataset_dict.json"
        if splits_file.exists():
            splits = json.loads(splits_file.read_text()).get("splits", [])
            if config.split not in splits:
                raise ValueError(f"split {config.split!r} is not in the dataset at {root}; it has {', '.join(splits)}")
        elif not (root / "dataset_info.json").exists() and next(root.rglob("*.parquet"), None) is None:
            raise ValueError(
                f"path {root} holds neither a dataset saved with save_to_disk nor parquet files "
                "(for a folder of images use kind: images)"
            )


def _not_an_image(path: Path, extensions: set[str]) -> str | None:
    """Why the file at ``path`` is not a seed image, or None when it is one (an image extension Pillow opens, or
    content Pillow identifies; whether it decodes is :func:`_checked_image`'s question)."""
    try:
        if not path.is_file():
            os.stat(path)  # raises for a dangling link or a link loop, with its reason
            return "not a regular file"
        if path.suffix.lower() in extensions:
            return None
        with Image.open(path):
            return None
    except OSError as err:
        if isinstance(err, Image.UnidentifiedImageError):
            return "not an image (Pillow cannot identify it)"
        return f"unreadable: {err.strerror or err}"
    except Exception as err:  # a plugin choking on a file that is not its format
        return f"not an image ({type(err).__name__}: {excerpt(str(err), 80)})"


def _open_dataset(path: Path, split: str) -> Any:
    """A local dataset: a save_to_disk folder (Dataset or DatasetDict), or parquet file(s)."""
    import datasets

    if (path / "dataset_info.json").exists() or (path / "dataset_dict.json").exists():
        ds = datasets.load_from_disk(str(path))
        return ds[split] if isinstance(ds, datasets.DatasetDict) else ds
    from syngen.data import read_parquet  # what is on disk now, never a cached copy of earlier bytes

    return read_parquet([str(path)] if path.is_file() else sorted(str(p) for p in path.rglob("*.parquet")))


def _checked_image(data: bytes | None) -> Outcome:
    """``{"image", "width", "height"}`` for bytes that decode fully as an image, else a Failure saying why.

    JPEG, PNG and WebP in plain RGB or grayscale keep their bytes; anything else becomes an upright RGB PNG of
    the first frame (16-bit scaled to 8, transparency flattened onto white)."""
    if not data:
        return Failure("bad_image", "empty file")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data)) as img:
                img.load()
                if img.mode in KEPT_AS_IS.get(img.format or "", ()) and img.getexif().get(ORIENTATION, 1) == 1:
                    keep_decoded(data, img.convert("RGB"))  # decoded here: the next stage need not decode it again
                    return {"image": data, "width": img.width, "height": img.height}
                rgb = _to_rgb(ImageOps.exif_transpose(img))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        return Failure("bad_image", f"decompression bomb: {err}")
    except Exception as err:  # PIL raises many types for corrupt data
        return Failure("bad_image", f"cannot decode image: {type(err).__name__}: {err}")
    data = image_bytes(rgb)
    keep_decoded(data, rgb)
    return {"image": data, "width": rgb.width, "height": rgb.height}


def _to_rgb(img: Image.Image) -> Image.Image:
    """An 8-bit RGB copy of ``img``: 16-bit scaled down, 32-bit and float stretched, transparency on white."""
    if img.mode.startswith("I;16"):
        img = Image.fromarray((np.asarray(img).astype(np.uint32) >> 8).astype(np.uint8))
    elif img.mode in ("I", "F"):
        values = np.asarray(img, dtype=np.float64)
        low, high = np.nanmin(values), np.nanmax(values)
        scaled = (values - low) / (high - low) * 255 if high > low else np.zeros_like(values)
        img = Image.fromarray(np.nan_to_num(scaled).astype(np.uint8))
    if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")
    return img.convert("RGB")
