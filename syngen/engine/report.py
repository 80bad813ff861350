"""What a run counts and tells: per-stage figures (:class:`StageReport`), the ``failures.jsonl`` lines, the samples
a stage's stored rows make (counted as they are read), and what the dataset card says about the run."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, cast

from syngen.recipe import Recipe
from syngen.sample import Sample
from syngen.stages.base import ModelStageConfig
from syngen.store import Row

__all__ = ["StageReport", "card_info", "failure_record", "merge", "skipped_records"]


@dataclass
class StageReport:
    """Per-stage figures of a run; in = out + failed, counting resumed samples too."""

    items_in: int = 0
    items_out: int = 0
    failed: int = 0
    emitted: int = 0
    computed: int = 0
    wall_s: float = 0.0
    load_s: float = 0.0
    loads: int = 0
    model_s: float = 0.0
    items_per_s: float = 0.0
    peak_mem_mb: float = 0.0
    failures: Counter = field(default_factory=Counter)
    failure_examples: dict[str, str] = field(default_factory=dict)  # failure kind -> its first message
    stats: Counter = field(default_factory=Counter)
    not_computed: int = 0  # inputs left out because they are not in the store yet (export of an unfinished run)


def card_info(recipe: Recipe, report: dict[str, Any], repo_id: str | None = None) -> Any:
    """What the dataset card says about the run: recipe, models, settings, the (filled-in-later) report, and the
    Hub repo (``repo_id``, else the recipe's ``output.push_to_hub``)."""
    from syngen.export import CardInfo

    models: dict[str, dict[str, str | None]] = {}
    for name, cfg in recipe.stages.items():
        if isinstance(cfg, ModelStageConfig) and cfg.model is not None:
            models[name] = {"id": cfg.model.id, "revision": cfg.model.revision}
    settings = {name: cfg.model_dump(mode="json", exclude={"model"}) for name, cfg in recipe.stages.items()}
    return CardInfo(
        name=recipe.name,
        license=recipe.top.output.license,
        recipe_text=recipe.text,
        models=models,
        settings=settings,
        report=report,
        pretty_name=recipe.top.output.pretty_name,
        description=recipe.top.description,
        repo_id=repo_id or recipe.top.output.push_to_hub,
        out_dir=recipe.top.output.dir,
    )


def failure_record(stage: str, sample: Sample, failure: dict[str, Any]) -> dict[str, Any]:
    """A line of ``failures.jsonl``: the stage, the seed item the sample came from (its file name, dataset index
    or captions line, as the source names it), the sample id, the failure's kind, message and traceback tail."""
    source: dict[str, Any] = dict(sample.get("source") or {})
    return {
        "stage": stage,
        "item": source.get("item"),
        "source": source.get("kind"),
        "id": sample["id"],
        "kind": failure["kind"],
        "message": failure["message"],
        "detail": failure.get("detail", ""),
    }


def skipped_records(stage: str, kind: str | None, skipped: dict[str, str]) -> Iterable[dict[str, Any]]:
    """A ``failures.jsonl`` line for each seed entry the source ``stage`` (of ``kind``) did not use (not an image,
    not a regular file, a dangling or looping link), with the reason."""
    for item, reason in skipped.items():
        yield {
            "stage": stage,
            "item": item,
            "source": kind,
            "id": None,
            "kind": "skipped",
            "message": reason,
            "detail": "",
        }


def merge(sample: Sample, rows: Iterable[Row], report: StageReport) -> list[Sample]:
    """The samples a stage produced from ``sample``, counting failures and ``*_stats`` columns into ``report``."""
    outputs = []
    for row in rows:
        data = json.loads(row["data"])
        if row["status"] == "failed":
            report.failed += 1
            report.failures[data["kind"]] += 1
            report.failure_examples.setdefault(data["kind"], data["message"][:300])
            continue
        for key, value in data.items():
            if key.endswith("_stats") and isinstance(value, dict):
                report.stats.update({k: v for k, v in value.items() if isinstance(v, (int, float))})
        new = {**sample, **data, "id": row["id"]}
        if row["image"] is not None:
            new["image"] = row["image"]
        outputs.append(cast(Sample, new))
    return outputs
