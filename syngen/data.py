"""Reading syngen datasets: preference pairs joined with their images.

The ``preference`` config stores each pair's image once, in the ``grounding`` row its ``image_id`` names
(unless the recipe set ``output.embed_images``, in which case every pair carries its image). This is the one
loader that joins them, for the trainer and for users::

    from syngen.data import load_preference

    pairs = load_preference("outputs/quickstart/dataset")  # or a Hub repo id
    pair = pairs[0]  # {"prompt", "chosen", "rejected", ..., "image": PIL.Image}
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datasets


def load_preference(path: str | Path, split: str = "train", **load_kwargs: Any) -> datasets.Dataset:
    """The ``preference`` pairs of a syngen dataset (a local folder or a Hub repo id), each with its ``image``.

    In the default layout the images are joined lazily from the ``grounding`` config by ``image_id`` on access
    (nothing is copied); a dataset exported with embedded images is returned as it is. Extra keyword arguments
    go to :func:`datasets.load_dataset` (e.g. ``revision``, ``cache_dir``). Raises ``KeyError`` on access to a
    pair whose image is missing from ``grounding``.
    """
    pairs = datasets.load_dataset(str(path), "preference", split=split, **load_kwargs)
    if "image" in pairs.column_names:
        return pairs
    grounding = datasets.load_dataset(str(path), "grounding", split=split, **load_kwargs)
    images = grounding.select_columns(["image"])
    row_of = {image_id: i for i, image_id in enumerate(grounding["id"])}

    def join(batch: dict[str, list[Any]]) -> dict[str, list[Any]]:
        if "image_id" not in batch:  # a column read that does not need the images
            return batch
        missing = [i for i in batch["image_id"] if i not in row_of]
        if missing:
            raise KeyError(f"preference pairs refer to images missing from the grounding config: {missing[:5]}")
        batch["image"] = images[[row_of[i] for i in batch["image_id"]]]["image"]
        return batch

    return pairs.with_transform(join)
