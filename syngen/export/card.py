"""The dataset card: Hub YAML metadata and a body rendered from the template ``card.md`` beside this file."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from datasets import DatasetInfo
from datasets.info import DatasetInfosDict
from huggingface_hub import DatasetCard, DatasetCardData

from syngen.export.schema import ConfigSchema
from syngen.hub import redact
from syngen.stats import stage_counts

_SIZE_CATEGORIES = [(1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M")]
_LOADING = re.compile(r'(load_dataset|load_preference)\("(?:[^"\\\n]|\\.)*"')  # a JSON (and Python) string
DESCRIPTION = (
    "Synthetic visual-grounding and referring-segmentation data made with syngen: images captioned and "
    "re-synthesized, short phrases extracted by an LLM, boxed by GroundingDINO, segmented by SAM, with "
    "SAM-perturbed hard negative masks as preference pairs."
)


@dataclass
class CardInfo:
    """What the dataset card tells beyond the data: the recipe, its models and settings, and the run report."""

    name: str
    license: str = "other"
    recipe_text: str = ""
    models: dict[str, dict[str, str | None]] = field(default_factory=dict)  # stage -> {"id", "revision"}
    settings: dict[str, dict[str, Any]] = field(default_factory=dict)  # stage -> config dict
    report: dict[str, Any] = field(default_factory=dict)  # {"stages": {stage: {"items_in", "items_out", ...}}}
    pretty_name: str | None = None
    description: str | None = None
    repo_id: str | None = None  # the Hub repo in the card's loading code; the dataset's folder when unknown
    out_dir: str | None = None  # where the recipe writes when run again (its output.dir); default outputs/<name>
    partial: bool = False  # exported from an unfinished run (`syngen export --partial`)


def dataset_card(
    info: CardInfo, configs: dict[str, DatasetInfo], schemas: dict[str, ConfigSchema], folder: Path
) -> str:
    """The README.md from the card info, each config's DatasetInfo (features, rows, sizes) and schema (the fields
    table): Hub YAML metadata (``configs`` and ``dataset_info`` of the non-empty configs, tasks, size, license,
    tags) and the body of ``card.md`` (loading code, fields, models, settings, the run's counts and failures, the
    recipe and how to rerun it). The loading code names ``info.repo_id``, else ``folder`` (where the dataset is
    written). Anything shaped like a Hub token is masked."""
    rows = {name: config.splits["train"].num_examples for name, config in configs.items()}
    present = [name for name in schemas if rows.get(name)]
    largest = max(rows.values(), default=0)
    data = DatasetCardData(
        license=info.license,
        pretty_name=info.pretty_name or info.name,
        language=["en"],
        annotations_creators=["machine-generated"],
        language_creators=["machine-generated"],
        size_categories=[next((label for limit, label in _SIZE_CATEGORIES if largest < limit), "n>1M")],
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
    card = DatasetCard.from_template(
        data,
        template_str=resources.files(__package__).joinpath("card.md").read_text(encoding="utf-8"),
        title=info.pretty_name or info.name,
        name=info.name,
        description=info.description or DESCRIPTION,
        # a JSON string is a Python literal too; ASCII, so a file name's surrogate escapes stay printable
        source=json.dumps(info.repo_id or str(folder.resolve())),
        out_dir=(info.out_dir or f"outputs/{info.name}").rstrip("/"),
        partial=info.partial,
        config_rows=[(name, rows.get(name, 0), schema.row) for name, schema in schemas.items()],
        omitted=[name for name in schemas if name not in present],
        present=present,
        schemas=[schemas[name] for name in present],
        models=[(stage, m["id"], m.get("revision") or "-") for stage, m in info.models.items()],
        settings=[
            (stage, key, _cell(value))
            for stage, config in info.settings.items()
            for key, value in config.items()
            if key != "model"
        ],
        run=[
            [stage, *map(str, stage_counts(s).values()), _cell(s.get("failures") or "-"), _cell(s.get("stats") or "-")]
            for stage, s in info.report.get("stages", {}).items()
        ],
        recipe=info.recipe_text.rstrip(),
    )
    return redact(str(card))


def set_repo_id(card: str, repo_id: str) -> str:
    """The card with its loading code pointed at the Hub repo ``repo_id``."""
    return _LOADING.sub(lambda m: f"{m.group(1)}({json.dumps(repo_id)}", card)


def _cell(value: Any) -> str:
    """A value for a markdown table cell: JSON for non-strings, pipes escaped."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text.replace("|", "\\|").replace("\n", " ")
