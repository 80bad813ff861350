"""Export: final samples to a Hub-layout dataset folder with two configs and a dataset card.

``<out>/dataset/`` holds ``data/grounding/train-00000.parquet ...`` (one row per image),
``data/preference/train-00000.parquet ...`` (one row per (region, negative) pair; by default without the image,
which the pair's ``image_id`` finds in ``grounding``: :func:`syngen.data.load_preference` joins them; with
``embed_images`` each pair carries its image for self-contained rows), ``README.md`` (the card,
whose YAML ``configs`` point ``datasets.load_dataset(folder, "grounding")`` at the shards) and
``recipe.yaml``. A config with no rows is left out: no folder, no ``configs`` entry, a line in the card.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from datasets import Dataset, DatasetInfo, Features, List, SplitDict, SplitInfo, Value
from datasets import Image as ImageFeature
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCardData
from PIL import Image

from syngen.masks import RLE, decode_rle
from syngen.push import redact
from syngen.sample import ModelInfo, Provenance, Sample, image_bytes, load_image
from syngen.stats import config_dir, stage_counts
from syngen.viz import draw_overlay

_BOX = List(Value("float32"), length=4)
_RLE = {"size": List(Value("int32"), length=2), "counts": Value("string")}

GROUNDING = Features(
    {
        "id": Value("string"),
        "image": ImageFeature(),
        "width": Value("int32"),
        "height": Value("int32"),
        "caption": Value("string"),
        "phrases": List(Value("string")),
        "regions": List(
            {
                "phrase": Value("string"),
                "box": _BOX,
                "box_score": Value("float32"),
                "mask": _RLE,
                "mask_score": Value("float32"),
                "views": List(
                    {
                        "t": Value("float32"),
                        "box": _BOX,
                        "region_box": _BOX,
                        "size": Value("int32"),
                        "score": Value("float32"),
                    }
                ),
            }
        ),
        "overlay": ImageFeature(),
        "provenance": {
            "source_kind": Value("string"),
            "source_item": Value("string"),
            "synth_seed": Value("int64"),
            "synth_index": Value("int32"),
            "synth_parent": Value("string"),
            "synth_prompt": Value("string"),
            "models": List({"stage": Value("string"), "id": Value("string"), "revision": Value("string")}),
        },
    }
)

PREFERENCE = Features(
    {
        "id": Value("string"),
        "image_id": Value("string"),
        "region_index": Value("int32"),
        "prompt": Value("string"),
        "box": _BOX,
        "chosen": _RLE,
        "rejected": _RLE,
        "chosen_mask": ImageFeature(),
        "rejected_mask": ImageFeature(),
        "kind": Value("string"),
        "iou": Value("float32"),
        "chosen_score": Value("float32"),
        "rejected_score": Value("float32"),
        "points": List(List(Value("float32"), length=2)),
        "labels": List(Value("int8")),
        "seed": Value("int64"),
    }
)

# the preference config with each pair's image embedded (output.embed_images), for self-contained rows
PREFERENCE_EMBEDDED = Features({**PREFERENCE, "image": ImageFeature()})

CONFIGS: dict[str, Features] = {"grounding": GROUNDING, "preference": PREFERENCE}
_SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
_VIEW_KEYS = ("t", "box", "region_box", "size", "score")


@dataclass
class CardInfo:
    """What the dataset card tells beyond the data: the recipe, its models and settings, and the run report."""

    name: str
    license: str = "other"
    recipe_text: str = ""
    models: dict[str, dict[str, str | None]] = field(default_factory=dict)  # stage -> {"id", "revision"}
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> config dict
    report: dict[str, Any] = field(
        default_factory=dict
    )  # run report: {"stages": {stage: {"items_in", "items_out", ...}}}
    pretty_name: str | None = None
    description: str | None = None
    repo_id: str | None = None  # shown in the card's loading code; "<user>/<name>" when unknown


def export_dataset(
    samples: Iterable[Sample],
    out_dir: Path,
    info: CardInfo,
    *,
    embed_images: bool = False,
    shard_rows: int = 1000,
    shard_bytes: int = 256 << 20,
) -> Path:
    """Writes ``<out_dir>/dataset`` from final samples (read once, as a stream) and returns its path.

    Each image is stored once, in ``grounding``; with ``embed_images`` every preference pair carries a copy too.

    Shards hold at most ``shard_rows`` rows and about ``shard_bytes`` of encoded images, so memory stays
    bounded whatever the dataset's size. The folder is built beside the old one and swapped in at the end:
    a kill leaves the previous dataset in place. With no samples at all the folder holds only the card.
    """
    out_dir = Path(out_dir)
    final, building = out_dir / "dataset", out_dir / ".dataset.tmp"
    _recover(out_dir)
    models: list[ModelInfo] = [
        {"stage": stage, "id": str(m["id"]), "revision": m.get("revision")} for stage, m in info.models.items()
    ]
    features = CONFIGS | ({"preference": PREFERENCE_EMBEDDED} if embed_images else {})
    writers = {name: _ShardWriter(building, name, features[name], shard_rows, shard_bytes) for name in CONFIGS}
    for sample in samples:
        writers["grounding"].add(_grounding_row(sample, models))
        for row in _preference_rows(sample):
            writers["preference"].add(
                row | ({"image": {"bytes": sample["image"], "path": None}} if embed_images else {})
            )
    configs = {name: writer.close() for name, writer in writers.items()}
    building.mkdir(parents=True, exist_ok=True)
    (building / "README.md").write_text(dataset_card(info, configs), encoding="utf-8")
    if info.recipe_text:
        (building / "recipe.yaml").write_text(info.recipe_text, encoding="utf-8")
    old = out_dir / ".dataset.old"
    if final.exists():
        final.rename(old)
    building.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return final


def dataset_card(info: CardInfo, configs: dict[str, DatasetInfo]) -> str:
    """The README.md from the card info and each config's DatasetInfo (features, rows, sizes): Hub YAML metadata
    (``configs`` and ``dataset_info`` of the non-empty configs, tasks, size, license, tags) and a body with
    loading code, fields, models, settings, the run's counts and failures, the recipe and how to rerun it."""
    rows = {name: config.splits["train"].num_examples for name, config in configs.items()}
    present = [name for name in CONFIGS if rows.get(name)]
    largest = max(rows.values(), default=0)
    size = next((label for limit, label in _SIZE_CATEGORIES if largest < limit), "n>1M")
    data = DatasetCardData(
        license=info.license,
        pretty_name=info.pretty_name or info.name,
        language=["en"],
        annotations_creators=["machine-generated"],
        language_creators=["machine-generated"],
        size_categories=[size],
        task_categories=["image-segmentation", "object-detection", "zero-shot-object-detection"],
        tags=["synthetic", "visual-grounding", "referring-segmentation", "syngen"],
        # datasets (5.2) caches a local folder with YAML configs by folder name and config entries only, not by the
        # files' contents: the description, which carries the shards' checksum, keeps two exports apart.
        configs=[
            {
                "config_name": name,
                "description": configs[name].description,
                "data_files": [{"split": "train", "path": f"data/{name}/train-*"}],
            }
            for name in present
        ],
    )
    DatasetInfosDict({name: configs[name] for name in present}).to_dataset_card_data(data)
    repo_id = info.repo_id or f"<user>/{info.name}"
    description = info.description or (
        "Synthetic visual-grounding and referring-segmentation data made with syngen: images captioned and "
        "re-synthesized, short phrases extracted by an LLM, boxed by GroundingDINO, segmented by SAM, with "
        "SAM-perturbed hard negative masks as preference pairs."
    )
    what = {
        "grounding": "one image: caption, phrases, regions (box, SAM mask as COCO RLE, DynRefer views), overlay",
        "preference": "one (region, negative) pair: phrase as prompt, chosen and rejected masks, kind, IoU",
    }
    config_rows = [f"| `{name}` | {rows.get(name, 0)} | {what[name]} |" for name in CONFIGS]
    omitted = [name for name in CONFIGS if name not in present]
    loading = [
        "```python",
        "from datasets import load_dataset",
        "from pycocotools import mask as mask_utils",
        "",
        *(f'{name} = load_dataset("{repo_id}", "{name}", split="train")' for name in present),
        *(
            [
                "# pairs refer to their image in `grounding` by `image_id`; syngen joins them:",
                f'# from syngen.data import load_preference; pairs = load_preference("{repo_id}")',
            ]
            if "preference" in present
            else []
        ),
        'region = grounding[0]["regions"][0]  # masks are COCO RLE',
        'mask = mask_utils.decode({"size": region["mask"]["size"], "counts": region["mask"]["counts"].encode()})',
        "```",
    ]
    body = [
        f"# {info.pretty_name or info.name}",
        "",
        description,
        "",
        "## Configs",
        "",
        "| config | rows | a row is |",
        "|---|---|---|",
        *config_rows,
        "",
        *([f"Configs with no rows are not published: {', '.join(omitted)}.", ""] if omitted else []),
        "## Loading",
        "",
        *(loading if present else ["Nothing was exported: see the run below for what failed."]),
        "",
        "## Fields",
        "",
        "- `grounding`: `id`, `image`, `width`, `height`, `caption`, `phrases`, `regions` (list of `phrase`, "
        "`box` [x1, y1, x2, y2] in pixels, `box_score`, `mask` (COCO RLE: `size` [h, w], `counts`), `mask_score`, "
        "`views` (`t`, `box`, `region_box`, `size`, `score`)), `overlay` (the image with masks and boxes drawn), "
        "`provenance` (source, synthesis seed/index/parent/prompt, model ids).",
        "- `preference`: `id`, `image_id` (the `grounding` row holding the image; `syngen.data.load_preference` "
        "joins it, or `image` is in the row when the recipe sets `output.embed_images`), `region_index`, `prompt` "
        "(the phrase), `box`, `chosen` and `rejected` (COCO RLE), `chosen_mask` and `rejected_mask` (PNG), `kind` "
        "(`boundary` or `semantic`), `iou` (rejected vs chosen), `chosen_score`, `rejected_score`, `points`, "
        "`labels` and `seed` (the SAM prompt that made the rejected mask).",
        "",
        "## Models",
        "",
        "| stage | model | revision |",
        "|---|---|---|",
        *(f"| {stage} | `{m['id']}` | {m.get('revision') or '-'} |" for stage, m in info.models.items()),
        "",
        "## Settings",
        "",
        "| stage | setting | value |",
        "|---|---|---|",
        *(
            f"| {stage} | {key} | {_cell(value)} |"
            for stage, config in info.settings.items()
            for key, value in config.items()
            if key != "model"
        ),
        "",
        "## Run",
        "",
        "| stage | in | out | failed | failures | counters |",
        "|---|---|---|---|---|---|",
        *(
            f"| {stage} | {' | '.join(str(n) for n in stage_counts(s).values())} | "
            f"{_cell(s.get('failures') or '-')} | {_cell(s.get('stats') or '-')} |"
            for stage, s in info.report.get("stages", {}).items()
        ),
        "",
        "## Recipe",
        "",
        "```yaml",
        info.recipe_text.rstrip(),
        "```",
        "",
        "## Reproduce",
        "",
        "The recipe is also in this repository as `recipe.yaml`. With syngen installed and the seed inputs it "
        f"names at the same paths, this rebuilds the dataset in `outputs/{info.name}/dataset/`:",
        "",
        "```bash",
        "syngen run recipe.yaml",
        "```",
        "",
    ]
    card = f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(body)
    return redact(card)


class _ShardWriter:
    """Buffers rows of one config and writes them as ``data/<config>/train-NNNNN.parquet`` shards with datasets."""

    def __init__(self, dataset_dir: Path, config: str, features: Features, max_rows: int, max_bytes: int) -> None:
        self.config, self.folder, self.features = config, config_dir(dataset_dir, config), features
        self.max_rows, self.max_bytes = max_rows, max_bytes
        self.images = [name for name, feature in self.features.items() if isinstance(feature, ImageFeature)]
        self.rows: list[dict[str, Any]] = []
        self.bytes = self.shards = self.written = self.arrow_bytes = self.file_bytes = 0
        self.digest = hashlib.sha256()

    def add(self, row: dict[str, Any]) -> None:
        self.rows.append(row)
        self.bytes += sum(len(row[name]["bytes"]) for name in self.images)
        if len(self.rows) >= self.max_rows or self.bytes >= self.max_bytes:
            self._flush()

    def close(self) -> DatasetInfo:
        """Writes what is buffered; returns the config's features, row count and sizes."""
        self._flush()
        splits = SplitDict()
        splits.add(SplitInfo(name="train", num_bytes=self.arrow_bytes, num_examples=self.written))
        return DatasetInfo(
            description=f"syngen export, shards sha256 {self.digest.hexdigest()[:16]}",
            config_name=self.config,
            features=self.features,
            splits=splits,
            download_size=self.file_bytes,
            dataset_size=self.arrow_bytes,
        )

    def _flush(self) -> None:
        if not self.rows:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        columns = {name: [row[name] for row in self.rows] for name in self.features}
        shard = Dataset.from_dict(columns, features=self.features)
        path = self.folder / f"train-{self.shards:05d}.parquet"
        shard.to_parquet(str(path))
        self.arrow_bytes += shard.data.nbytes
        self.file_bytes += path.stat().st_size
        with path.open("rb") as written:
            for chunk in iter(lambda: written.read(1 << 20), b""):
                self.digest.update(chunk)
        self.written += len(self.rows)
        self.shards += 1
        self.rows, self.bytes = [], 0


def _recover(out_dir: Path) -> None:
    """Undoes what a killed export left: a half-built folder, or a swap cut between its two renames."""
    shutil.rmtree(out_dir / ".dataset.tmp", ignore_errors=True)
    old, final = out_dir / ".dataset.old", out_dir / "dataset"
    if old.exists():
        if final.exists():
            shutil.rmtree(old)
        else:
            old.rename(final)


def _grounding_row(sample: Sample, models: list[ModelInfo]) -> dict[str, Any]:
    regions = sample.get("regions") or []
    overlay = io.BytesIO()
    draw_overlay(load_image(sample), regions).save(overlay, format="JPEG", quality=80)
    return {
        "id": sample["id"],
        "image": {"bytes": sample["image"], "path": None},
        "width": sample["width"],
        "height": sample["height"],
        "caption": sample.get("caption"),
        "phrases": sample.get("phrases") or [],
        "regions": [
            {
                "phrase": r["phrase"],
                "box": r["box"],
                "box_score": r.get("box_score"),
                "mask": r.get("mask"),
                "mask_score": r.get("mask_score"),
                "views": [{k: view.get(k) for k in _VIEW_KEYS} for view in r.get("views") or []],
            }
            for r in regions
        ],
        "overlay": {"bytes": overlay.getvalue(), "path": None},
        "provenance": _provenance(sample, models),
    }


def _provenance(sample: Sample, models: list[ModelInfo]) -> Provenance:
    """Where an exported image came from: its seed item, its synthesis (None when not synthesized), the models."""
    source: dict[str, Any] = dict(sample.get("source") or {})
    synth: dict[str, Any] = dict(sample.get("synth") or {})
    item = source.get("item")
    return {
        "source_kind": source.get("kind"),
        "source_item": item if item is None or isinstance(item, str) else json.dumps(item, sort_keys=True),
        "synth_seed": synth.get("seed"),
        "synth_index": synth.get("index"),
        "synth_parent": synth.get("parent"),
        "synth_prompt": synth.get("prompt"),
        "models": models,
    }


def _preference_rows(sample: Sample) -> list[dict[str, Any]]:
    """One row per (region, negative) of the sample; the id joins image id, region index and negative index."""
    rows = []
    for r, region in enumerate(sample.get("regions") or []):
        if region.get("mask") is None:
            continue
        chosen_png = _mask_png(region["mask"])
        for n, negative in enumerate(region.get("negatives") or []):
            rows.append(
                {
                    "id": f"{sample['id']}-{r}-{n}",
                    "image_id": sample["id"],
                    "region_index": r,
                    "prompt": region["phrase"],
                    "box": region["box"],
                    "chosen": region["mask"],
                    "rejected": negative["mask"],
                    "chosen_mask": {"bytes": chosen_png, "path": None},
                    "rejected_mask": {"bytes": _mask_png(negative["mask"]), "path": None},
                    "kind": negative["kind"],
                    "iou": negative["iou"],
                    "chosen_score": region.get("mask_score"),
                    "rejected_score": negative.get("score"),
                    "points": negative.get("points") or [],
                    "labels": negative.get("labels") or [],
                    "seed": negative.get("seed"),
                }
            )
    return rows


def _mask_png(rle: RLE) -> bytes:
    """A binary mask as a 1-bit PNG (white = mask)."""
    return image_bytes(Image.fromarray(decode_rle(rle)))


def _cell(value: Any) -> str:
    """A value for a markdown table cell: JSON for non-strings, pipes escaped."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text.replace("|", "\\|").replace("\n", " ")
