"""Reading datasets: local folders and parquet files as they are on disk now, Hub ids through datasets' cache,
and preference pairs joined with their images.

The ``preference`` config stores each pair's image once, in the ``grounding`` row its ``image_id`` names
(unless the recipe set ``output.embed_images``, in which case every pair carries its image). This is the one
loader that joins them, for the trainer and for users::

    from syngen.data import load_preference

    pairs = load_preference("outputs/quickstart/dataset")  # or a Hub repo id
    pair = pairs[0]  # {"prompt", "chosen", "rejected", ..., "image": PIL.Image}

datasets caches what it reads from a local folder under a key made of the folder's name and its card's
metadata: a folder whose parquet files change while its card stays the same (rows filtered in place, a
hand-built folder laid out like another) would be read back from a stale copy. Every local read here goes to a
cache folder named by a digest of the files' bytes instead (:func:`fresh_cache_dir`), so it returns what is on
disk now; ``benchmarks/local_reads.py`` measures what that costs.
"""

from __future__ import annotations

import glob
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import datasets
import huggingface_hub

from syngen.errors import DatasetError
from syngen.refs import looks_local


def fresh_cache_dir(files: Iterable[Path], cache_dir: str | Path | None = None) -> str:
    """A datasets ``cache_dir`` named by an xxh3-128 digest of each file's name and bytes (under ``cache_dir``,
    default datasets' cache): two reads of the same bytes share it; any change to a file, whatever its size and
    modification time, gives another."""
    import xxhash  # a dependency of datasets

    digest = xxhash.xxh3_128()
    buffer = bytearray(1 << 20)  # reused: a new bytes object per read is slower (page faults; docs/benchmarks.md)
    view = memoryview(buffer)
    for path in sorted(Path(f) for f in files):
        digest.update(f"{path.resolve()}\0{path.stat().st_size}\0".encode())
        with path.open("rb", buffering=0) as fh:
            while n := fh.readinto(buffer):
                digest.update(view[:n])
    root = Path(cache_dir) if cache_dir else Path(datasets.config.HF_DATASETS_CACHE)
    return str(root / "syngen-local" / digest.hexdigest())


def folder_files(folder: Path) -> list[Path]:
    """The files of a dataset folder, hidden ones (``.cache``, ``.git``...) left out."""
    return [
        p
        for p in folder.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    ]


def read_dataset(
    spec: str | Path, config: str | None = None, split: str = "train", **load_kwargs: Any
) -> datasets.Dataset:
    """Config ``config``, split ``split`` of a local dataset folder (read as it is on disk now, the card's sizes
    unchecked: the files are the truth) or of a Hub dataset id (datasets' own cache; ``revision`` pins it).
    ``load_kwargs`` go to :func:`datasets.load_dataset`.

    Raises :class:`~syngen.errors.DatasetError` for a path that is neither a folder nor a reachable Hub
    dataset; a path that looks local (:func:`looks_local`) is never looked up on the Hub.
    """
    return _load(str(spec), config, split, _read_options(str(spec), load_kwargs))


def read_splits(spec: str | Path, config: str | None = None, **load_kwargs: Any) -> dict[str, datasets.Dataset]:
    """Every split of config ``config`` of a local dataset folder or Hub dataset id, by name, read by the rules
    of :func:`read_dataset` (and raising what it raises)."""
    return dict(_load(str(spec), config, None, _read_options(str(spec), load_kwargs)))


def _read_options(spec: str, load_kwargs: dict[str, Any]) -> dict[str, Any]:
    """``load_kwargs`` for :func:`datasets.load_dataset`, with a fresh cache for a local folder; raises
    :class:`~syngen.errors.DatasetError` for a local-looking path that is not a folder."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return load_kwargs | {
            "verification_mode": load_kwargs.get("verification_mode", "no_checks"),
            "cache_dir": fresh_cache_dir(folder_files(path), load_kwargs.get("cache_dir")),
        }
    if path.exists():
        raise DatasetError(f"{spec}: a file, where a dataset folder or a Hub dataset id was expected")
    if looks_local(spec):
        raise DatasetError(f"{spec}: no such folder (a path, so the Hub was not asked)")
    return load_kwargs


def _load(spec: str, config: str | None, split: str | None, load_kwargs: dict[str, Any]) -> Any:
    """``datasets.load_dataset`` of a folder or Hub id: a Dataset, or a DatasetDict for ``split`` None."""
    path = Path(spec).expanduser()
    if path.is_dir():
        return datasets.load_dataset(str(path), config, split=split, **load_kwargs)
    try:
        return datasets.load_dataset(spec, config, split=split, **load_kwargs)
    except (datasets.exceptions.DatasetNotFoundError, ConnectionError, huggingface_hub.errors.HfHubHTTPError) as err:
        if huggingface_hub.constants.HF_HUB_OFFLINE:
            hub = "is offline (HF_HUB_OFFLINE is set)"
        elif isinstance(err, ConnectionError):
            hub = "cannot be reached"
        else:
            hub = "has no such dataset (or it is gated or private: log in with `hf auth login`)"
        raise DatasetError(
            f"{spec}: no such local folder, and the Hub {hub} ({type(err).__name__}). Check the path (a syngen "
            "output folder, its dataset/ folder, or an org/name Hub id), or fetch the dataset where there is network."
        ) from None


def read_parquet(files: list[str]) -> datasets.Dataset:
    """Local parquet files (paths or globs) as one dataset, as they are on disk now."""
    found = sorted({p for f in map(os.path.expanduser, files) for p in ([f] if os.path.isfile(f) else glob.glob(f))})
    if not found:
        raise DatasetError(f"{', '.join(files)}: no such parquet file")
    return datasets.load_dataset(
        "parquet", data_files=found, split="train", cache_dir=fresh_cache_dir(map(Path, found))
    )


def load_preference(path: str | Path, split: str = "train", **load_kwargs: Any) -> datasets.Dataset:
    """The ``preference`` pairs of a syngen dataset (a local folder or a Hub repo id), each with its ``image``.

    In the default layout the images are joined lazily from the ``grounding`` config by ``image_id`` on access
    (nothing is copied); a dataset exported with embedded images is returned as it is. A local folder is read
    as it is on disk now (see :func:`read_dataset`). Extra keyword arguments go to :func:`datasets.load_dataset`
    (e.g. ``revision``, ``cache_dir``). Raises ``KeyError`` on access to a pair whose image is missing from
    ``grounding``.
    """
    options = _read_options(str(path), load_kwargs)  # one digest of a local folder for both configs
    pairs = _load(str(path), "preference", split, options)
    if "image" in pairs.column_names:
        return pairs
    grounding = _load(str(path), "grounding", split, options)
    images = grounding.select_columns(["image"])
    # through arrow: iterating datasets' Column reads row by row (docs/benchmarks.md#figures-behind-the-code)
    row_of = {image_id: i for i, image_id in enumerate(grounding.with_format("arrow")["id"].to_pylist())}

    def join(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if "image_id" not in batch:  # a column read that does not need the images
            return batch
        missing = [i for i in batch["image_id"] if i not in row_of]
        if missing:
            raise KeyError(f"preference pairs refer to images missing from the grounding config: {missing[:5]}")
        batch["image"] = images[[row_of[i] for i in batch["image_id"]]]["image"]
        return batch

    return pairs.with_transform(join)
