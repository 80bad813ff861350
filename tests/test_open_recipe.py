"""recipes/open.yaml: it validates with the Apache-licensed grounder and segmenter, differs from synground.yaml only
there, and its offline twin variant (the same stages on the twins of the same backends) runs end to end and
exports both configs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import yaml
from typer.testing import CliRunner

from syngen.cli import app
from syngen.recipe import load_recipe
from syngen.stats import summarize

REPO = Path(__file__).resolve().parent.parent
SEEDS = str(REPO / "recipes" / "seeds" / "quickstart")


def recipe(name: str) -> dict[str, Any]:
    data = yaml.safe_load((REPO / "recipes" / name).read_text())
    data["source"]["path"] = SEEDS  # the recipe's is the user's folder
    return data


def twin_variant() -> dict[str, Any]:
    """recipes/open.yaml with every model the tiny twin of its backend, small sizes, on the CPU."""
    data = recipe("open.yaml")
    stages = data["stages"]
    stages["caption"].update(model="tiny:captioner-llava", max_new_tokens=12, batch_size=4)
    stages["synthesize"].update(model="tiny:sdxl", steps=2, height=128, width=128, batch_size=4)
    stages["phrases"].update(model="tiny:llm", max_new_tokens=24, batch_size=4)
    stages["ground"].update(model="tiny:grounder-mm-grounding-dino")
    stages["segment"].update(model="tiny:segmenter-sam2")
    data["runtime"] = {"device": "cpu", "dtype": "float32", "wave_size": 4}
    return data


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def rows(out: Path, config: str) -> list[dict[str, Any]]:
    return [
        row
        for f in sorted((out / "dataset" / "data" / config).glob("*.parquet"))
        for row in pq.read_table(f).to_pylist()
    ]


def test_open_recipe_is_synground_with_the_open_grounder_and_segmenter(tmp_path: Path) -> None:
    open_, synground = recipe("open.yaml"), recipe("synground.yaml")
    for stage in ("ground", "segment"):
        assert open_["stages"][stage].pop("model") != synground["stages"][stage].pop("model")
    assert open_["stages"] == synground["stages"] and open_["runtime"] == synground["runtime"]
    loaded = load_recipe(write(tmp_path, recipe("open.yaml")))
    ground, segment = loaded.stages["ground"].model, loaded.stages["segment"].model
    assert (ground.id, ground.backend) == (
        "openmmlab-community/mm_grounding_dino_tiny_o365v1_goldg_v3det",
        "mm-grounding-dino",
    )
    assert (segment.id, segment.backend) == ("facebook/sam2.1-hiera-large", "sam2")


def test_twin_variant_runs_end_to_end_and_exports_both_configs(tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(write(tmp_path, twin_variant())), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    stats = {name: stage["stats"] for name, stage in json.loads((out / "run.json").read_text())["stages"].items()}
    assert stats["ground"]["detections"] > 0 and stats["segment"]["masks"] == stats["ground"]["detections"]
    configs = {config: rows(out, config) for config in ("grounding", "preference")}
    assert configs["grounding"] and configs["preference"]
    regions = [region for row in configs["grounding"] for region in row["regions"]]
    assert len(regions) == stats["segment"]["masks"] and all(region["mask"] for region in regions)
    assert {pair["kind"] for pair in configs["preference"]} <= {"boundary", "semantic"}  # on SAM 2's embeddings


def test_twin_variant_with_sibling_instances_exports_and_counts_them(tmp_path: Path) -> None:
    """keep: all and instance_per_mask: every instance pair's rejected mask is the mask of another region of its
    phrase in the grounding row, the card's run table and inspect's summary count the kind."""
    data = twin_variant()
    data["stages"]["ground"]["keep"] = "all"
    data["stages"]["negatives"]["instance_per_mask"] = 1
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["run", str(write(tmp_path, data)), "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    grounding = {row["id"]: row for row in rows(out, "grounding")}
    pairs = [row for row in rows(out, "preference") if row["kind"] == "instance"]
    assert pairs, "the random twin with keep: all gives some phrase several boxes"
    for pair in pairs:
        regions = grounding[pair["image_id"]]["regions"]
        siblings = [
            r["mask"] for i, r in enumerate(regions) if r["phrase"] == pair["prompt"] and i != pair["region_index"]
        ]
        assert pair["rejected"] in siblings and pair["seed"] is None and pair["points"] == []
    accepted = json.loads((out / "run.json").read_text())["stages"]["negatives"]["stats"]["instance_accepted"]
    assert accepted == len(pairs)
    assert f'"instance_accepted": {accepted}' in (out / "dataset" / "README.md").read_text()  # the card's run table
    assert summarize(out)["preference"]["by_kind"]["instance"] == len(pairs)
    inspect = CliRunner().invoke(app, ["inspect", str(out), "--n", "2"], terminal_width=200)
    assert inspect.exit_code == 0 and "instance" in inspect.output
