"""A run's output folder for the page tests: a dataset, run.json and failures.jsonl with known counts."""

from __future__ import annotations

import json
from pathlib import Path

from syngen.export import export_dataset
from tests.export.test_export import make_info, make_region, make_sample

STAGE = {
    "computed": 5,
    "wall_s": 1.5,
    "loads": 1,
    "load_s": 0.5,
    "model_s": 0.75,
    "items_per_s": 3.3,
    "peak_mem_mb": 600,
}
RUN = {
    "recipe": "demo",
    "device": "cpu",
    "dtype": "float32",
    "total_s": 12.5,
    "model_loads": {"tiny:grounder": 1, "tiny:segmenter": 1},
    "stages": {
        "ground": {**STAGE, "items_in": 10, "items_out": 7, "failed": 3, "failures": {"no_phrases": 3},
                   "stats": {"filtered_small_box": 2, "filtered_large_box": 0}},
        "segment": {**STAGE, "items_in": 7, "items_out": 6, "failed": 1, "failures": {"timeout": 1},
                    "stats": {"filtered_mask_score": 4}},
        "negatives": {**STAGE, "items_in": 6, "items_out": 5, "failed": 1, "failures": {"ValueError": 1}},
    },
}  # fmt: skip
FAILURES = [("ground", "no_phrases", f"seed{i}.png") for i in range(3)]
FAILURES += [("segment", "timeout", "seed7.png"), ("negatives", "ValueError", "seed8.png")]
IMAGES = 5  # the first without regions, each other with one region and a boundary and a semantic negative
PAIRS = {"boundary": 4, "semantic": 4}


def make_run(out: Path) -> Path:
    """Writes ``out``/dataset, run.json and failures.jsonl; returns ``out``."""
    samples = [make_sample(0, [])]
    samples += [make_sample(i, [make_region((10, 10, 50, 40), kinds=("boundary", "semantic"))]) for i in range(1, 5)]
    samples[1]["caption"] = "a <b>bold</b> & caption"
    samples[2]["regions"][0]["phrase"] = "a very long phrase that is wider than the whole small image"
    export_dataset(samples, out, make_info(), shard_rows=2)
    (out / "run.json").write_text(json.dumps(RUN))
    with (out / "failures.jsonl").open("w") as lines:
        for stage, kind, item in FAILURES:
            record = {"stage": stage, "kind": kind, "item": item, "message": f"{kind} on {item}"}
            lines.write(json.dumps(record) + "\n")
    return out
