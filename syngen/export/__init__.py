"""Export: final samples to a Hub-layout dataset folder with two configs and a dataset card.

``<out>/dataset/`` holds ``data/grounding/train-00000.parquet ...`` (one row per image),
``data/preference/train-00000.parquet ...`` (one row per (region, negative) pair; by default without the image,
which the pair's ``image_id`` finds in ``grounding``: :func:`syngen.data.load_preference` joins them; with
``embed_images`` each pair carries its image for self-contained rows), ``README.md`` (the card,
whose YAML ``configs`` point ``datasets.load_dataset(folder, "grounding")`` at the shards) and
``recipe.yaml``. A config with no rows is left out: no folder, no ``configs`` entry, a line in the card.

The package's parts: :mod:`~syngen.export.schema` (each config's features, built from what the stages that ran
declare), :mod:`~syngen.export.rows`, :mod:`~syngen.export.shards` (parquet shards) and
:mod:`~syngen.export.card` (the card, from the template ``card.md``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from syngen.export.card import CardInfo, dataset_card, set_repo_id
from syngen.export.rows import SampleMasks, grounding_row, preference_rows
from syngen.export.schema import Column, ConfigSchema, build, published
from syngen.export.shards import ShardWriter
from syngen.owned import replacing
from syngen.sample import ModelInfo, Sample

DATASET_FILES = ("README.md", "recipe.yaml", "data")  # what an export writes: a dataset/ holding only these is syngen's

__all__ = ["CardInfo", "Column", "ConfigSchema", "dataset_card", "export_dataset", "schemas", "set_repo_id"]


def schemas(stages: Mapping[str, Any] | None = None, embed_images: bool = False) -> dict[str, ConfigSchema]:
    """The published configs' schemas for the given stages (name -> config, as a recipe has them), or with every
    column any registered stage may publish; ``embed_images``: each preference pair carries its image."""
    return build(published(stages), embed_images)


def export_dataset(
    samples: Iterable[Sample],
    out_dir: Path,
    info: CardInfo,
    *,
    stages: Mapping[str, Any] | None = None,
    embed_images: bool = False,
    shard_rows: int = 1000,
    shard_bytes: int = 256 << 20,
) -> Path:
    """Writes ``<out_dir>/dataset`` from final samples (read once, as a stream) and returns its path.

    ``stages`` (name -> config) are the stages that ran: their declared columns make the ``grounding`` schema
    (default: every registered stage's). Each image is stored once, in ``grounding``; with ``embed_images`` every
    preference pair carries a copy too. Shards hold at most ``shard_rows`` rows and about ``shard_bytes`` of
    encoded images, so memory stays bounded whatever the dataset's size. The folder is built beside the old one
    and swapped in at the end (:func:`syngen.owned.replacing`): a kill leaves the previous dataset in place, and
    a ``dataset/`` syngen did not write is never replaced (:class:`~syngen.owned.ForeignFolder`). With no
    samples at all the folder holds only the card (and the ``.syngen`` marker).
    """
    out_dir = Path(out_dir)
    configs = schemas(stages, embed_images)
    models: list[ModelInfo] = [
        {"stage": stage, "id": str(m["id"]), "revision": m.get("revision")} for stage, m in info.models.items()
    ]
    with replacing(out_dir / "dataset", older=DATASET_FILES) as building:
        writers = {
            name: ShardWriter(building, name, schema.features, shard_rows, shard_bytes)
            for name, schema in configs.items()
        }
        grounding = configs["grounding"].features
        for sample in samples:
            masks = SampleMasks()
            writers["grounding"].add(grounding_row(sample, grounding, models, masks))
            for row in preference_rows(sample, embed_images, masks):
                writers["preference"].add(row)
        infos = {name: writer.close() for name, writer in writers.items()}
        (building / "README.md").write_text(dataset_card(info, infos, configs, out_dir / "dataset"), encoding="utf-8")
        if info.recipe_text:
            (building / "recipe.yaml").write_text(info.recipe_text, encoding="utf-8")
    return out_dir / "dataset"
