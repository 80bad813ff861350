"""Counts of regions, negatives and preference pairs, and of detections that reach no phrase, on the quickstart
(tiny twins) and on the quickstart's drawn seed images with the flood-fill test segmenter in SAM's place.

Run from the repo root: ``python benchmarks/fidelity_counts.py`` (prints one JSON line per setting).
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def counts(out: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Regions and pairs of the exported dataset, negatives and ground counters of the run report."""
    from syngen.stats import summarize

    summary = summarize(out)
    stages = report["stages"]
    negatives = stages.get("negatives", {}).get("stats", {})
    return {
        "images": summary["images"],
        "regions": summary["regions"]["total"],
        "negatives": negatives.get("boundary_accepted", 0) + negatives.get("semantic_accepted", 0),
        "pairs": summary["preference"]["pairs"],
        "ground": stages["ground"]["stats"],
        "segment": stages["segment"]["stats"],
    }


def run(recipe_path: Path, out: Path, floodfill: bool) -> dict[str, Any]:
    from syngen.executors.local import run as run_recipe
    from syngen.models.pool import ModelPool
    from syngen.recipe import load_recipe

    recipe = load_recipe(recipe_path)
    if floodfill:
        from syngen.devtools.fakes import FloodFillSegmenter

        segmenter = FloodFillSegmenter()
        sam = {recipe.stages[name].model.id for name in ("segment", "negatives") if name in recipe.stages}
        original = ModelPool.get

        def get(self: Any, ref: Any, *args: Any, **kwargs: Any) -> Any:
            return (segmenter, 0.0) if ref is not None and ref.id in sam else original(self, ref, *args, **kwargs)

        ModelPool.get = get  # type: ignore[method-assign]
    report = run_recipe(recipe, out, fresh=True, progress=False)
    return counts(out, report)


def main() -> None:
    quickstart = ROOT / "recipes" / "quickstart.yaml"
    with tempfile.TemporaryDirectory() as tmp:
        print(json.dumps({"setting": "quickstart"} | run(quickstart, Path(tmp) / "q", floodfill=False)))
        # The flood fill needs flat colours: the drawn seeds themselves, no synthesis.
        data = yaml.safe_load(quickstart.read_text())
        del data["stages"]["synthesize"]
        data["source"]["path"] = str(quickstart.parent / data["source"]["path"])
        for name in ("caption", "phrases"):
            data["stages"][name]["prompt"] = str(ROOT / data["stages"][name]["prompt"])
        flood = Path(tmp) / "flood.yaml"
        flood.write_text(yaml.safe_dump(data))
        print(json.dumps({"setting": "floodfill"} | run(flood, Path(tmp) / "f", floodfill=True)))


if __name__ == "__main__":
    main()
