"""A fast, model-free pipeline for fault-injection tests: a fake for every stage after the source.

Each fake derives its output from the sample id alone (so an interrupted and resumed run must give the same
dataset as an uninterrupted one), writes valid columns for the export (PNG images, COCO RLE masks), sleeps
``delay`` seconds per batch so that kills land inside stages, and fails every sample whose id starts with one
of ``fail_prefixes``. Run as a module, it is ``syngen`` with these fakes registered:

    python -m tests.fault_stages run recipe.yaml --out OUT
"""

from __future__ import annotations

import hashlib
import io
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image
from pydantic import Field

from syngen import stages as registry
from syngen.masks import encode_rle
from syngen.sample import Failure, Sample
from syngen.stages import stage_class
from syngen.stages.base import ModelRef, Outcome, Stage, StageConfig

STAGE_NAMES = ("caption", "synthesize", "phrases", "ground", "segment", "negatives", "views")


class FakeConfig(StageConfig):
    model: ModelRef | None = Field(None, description="Unused: no fake loads a model (negatives shares segment's).")
    delay: float = Field(0.0, ge=0, description="Seconds slept per batch.")
    fail_prefixes: list[str] = Field(default_factory=list, description="Sample ids starting so fail here.")


def _n(sample_id: str, salt: str) -> int:
    return int(hashlib.sha1(f"{salt}{sample_id}".encode()).hexdigest()[:6], 16)


def _box_mask(box: list[float], size: int = 24) -> dict[str, Any]:
    mask = np.zeros((size, size), dtype=bool)
    x1, y1, x2, y2 = (int(v) for v in box)
    mask[y1:y2, x1:x2] = True
    return encode_rle(mask)


class _Fake(Stage):
    Config = FakeConfig

    def process(self, samples: list[Sample], model: Any = None) -> list[Outcome]:
        time.sleep(self.config.delay)  # type: ignore[attr-defined]
        return [
            Failure("planted", f"{self.name} refuses {s['id']}")
            if s["id"].startswith(tuple(self.config.fail_prefixes))  # type: ignore[attr-defined]
            else self.one(s)
            for s in samples
        ]

    def one(self, sample: Sample) -> Outcome:
        raise NotImplementedError


class Caption(_Fake):
    name, needs, adds = "caption", ("image",), ("caption",)

    def one(self, sample: Sample) -> Outcome:
        return {"caption": f"a red box number {_n(sample['id'], 'c') % 100}"}


class Synthesize(_Fake):
    name, needs, adds = "synthesize", ("caption",), ("image", "width", "height", "synth")

    def one(self, sample: Sample) -> Outcome:
        outputs = []
        for index in range(2):
            colour = tuple(_n(sample["id"], f"s{index}{k}") % 256 for k in range(3))
            buf = io.BytesIO()
            Image.new("RGB", (24, 24), colour).save(buf, format="PNG")
            synth = {"seed": index, "index": index, "parent": sample["id"], "prompt": sample["caption"]}
            image = {"image": buf.getvalue(), "width": 24, "height": 24}
            outputs.append({"id": f"{sample['id'][:12]}s{index}", "synth": synth} | image)
        return outputs


class Phrases(_Fake):
    name, needs, adds = "phrases", ("caption",), ("phrases",)

    def one(self, sample: Sample) -> Outcome:
        return {"phrases": ["red box"]}


class Ground(_Fake):
    name, needs, adds = "ground", ("image", "phrases"), ("regions",)

    def one(self, sample: Sample) -> Outcome:
        x = _n(sample["id"], "g") % 10
        return {"regions": [{"phrase": "red box", "box": [x, 2.0, x + 10.0, 14.0], "box_score": 0.5}]}


class Segment(_Fake):
    name, needs, adds = "segment", ("image", "regions"), ("regions",)

    def one(self, sample: Sample) -> Outcome:
        regions = [r | {"mask": _box_mask(r["box"]), "mask_score": 0.9} for r in sample["regions"]]
        return {"regions": regions}


class Negatives(_Fake):
    name, needs, adds = "negatives", ("image", "regions"), ("regions",)

    def one(self, sample: Sample) -> Outcome:
        regions = []
        for r in sample["regions"]:
            x1, y1, x2, y2 = r["box"]
            negative = {
                "mask": _box_mask([x1, y1, x2 - 3, y2]),
                "kind": "boundary",
                "iou": 0.7,
                "score": 0.4,
                "points": [[x1 + 1, y1 + 1]],
                "labels": [1],
                "seed": 0,
            }
            regions.append(r | {"negatives": [negative]})
        return {"regions": regions}


class Views(_Fake):
    name, needs, adds = "views", ("image", "regions"), ("regions",)

    def one(self, sample: Sample) -> Outcome:
        view = {"t": 0.5, "box": [0.0, 0.0, 24.0, 24.0], "region_box": [0.0, 0.0, 24.0, 24.0], "size": 24, "score": 1.0}
        return {"regions": [r | {"views": [view]} for r in sample["regions"]]}


FAKES = {cls.name: cls for cls in (Caption, Synthesize, Phrases, Ground, Segment, Negatives, Views)}
for _fake in FAKES.values():  # each fake publishes what the stage it stands for publishes, and has its role
    _fake.publishes = stage_class(_fake.name).publishes
    _fake.role = stage_class(_fake.name).role  # (no model is loaded: the fakes' settings name none)


def register() -> None:
    """Point the stage registry at the fakes (for this process)."""
    for name, cls in FAKES.items():
        registry.STAGES[name] = f"{__name__}:{cls.__name__}"


def write_recipe(
    folder: Path,
    seeds: int = 12,
    *,
    stages: dict[str, dict[str, Any]] | None = None,
    delay: float = 0.0,
    wave_size: int = 3,
    **extra: Any,
) -> Path:
    """A recipe over ``seeds`` drawn images; ``stages`` maps stage names to settings (default: every fake stage
    with ``delay`` and batch size 2); ``extra`` goes to the top level."""
    seed_dir = folder / "seeds"
    seed_dir.mkdir(parents=True, exist_ok=True)
    for i in range(seeds):
        Image.new("RGB", (16 + i, 12), (i * 20 % 256, 90, 200)).save(seed_dir / f"seed {i:02d}.png")
    if stages is None:
        stages = {name: {"delay": delay, "batch_size": 2} for name in STAGE_NAMES}
    recipe = {
        "name": "faults",
        "source": {"kind": "images", "path": "seeds", "batch_size": 2},
        "runtime": {"device": "cpu", "wave_size": wave_size, "overlap": "on"},  # kills land in worker threads too
        "stages": stages,
    } | extra
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


if __name__ == "__main__":
    register()
    from syngen.cli import main

    main()  # as the `syngen` program: a stop by Ctrl-C or SIGTERM ends the process at once
