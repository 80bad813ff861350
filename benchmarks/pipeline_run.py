"""What the overhead and scaling benchmarks share: a quickstart-like recipe on tiny twins over N drawn seed
images of a given size, run in this process, and the figures of its run report.

Not a benchmark itself; ``python benchmarks/overhead.py`` and ``python benchmarks/scaling.py`` use it.
"""

from __future__ import annotations

import resource
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from PIL import Image, ImageDraw

from syngen.executors.local import run
from syngen.recipe import load_recipe

REPO = Path(__file__).resolve().parent.parent


def draw(size: tuple[int, int], seed: int) -> Image.Image:
    """A picture with a coloured background, a rectangle and an ellipse at seeded places."""
    rng = np.random.default_rng(seed)
    w, h = size
    image = Image.new("RGB", size, tuple(int(c) for c in rng.integers(0, 255, 3)))
    pen = ImageDraw.Draw(image)
    x, y = rng.uniform(0.05, 0.4, 2)
    pen.rectangle([w * x, h * y, w * (x + 0.35), h * (y + 0.4)], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    x, y = rng.uniform(0.45, 0.6, 2)
    pen.ellipse([w * x, h * y, w * (x + 0.35), h * (y + 0.35)], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
    return image


def write_recipe(
    folder: Path,
    samples: int,
    size: tuple[int, int],
    wave_size: int = 64,
    overlap: str = "auto",
    device: str = "cpu",
    cpu_threads: int | str = "auto",
    png_compress_level: int | None = None,
) -> Path:
    """Seeds and a recipe in ``folder``: every stage on tiny twins, images kept at ``size`` (width, height),
    ``runtime.overlap``, ``runtime.device``, ``runtime.cpu_threads`` and synthesize's ``png_compress_level`` as
    given."""
    seeds = folder / "seeds"
    seeds.mkdir(parents=True, exist_ok=True)
    for i in range(samples):
        draw(size, i).save(seeds / f"{i:05d}.png")
    recipe = {
        "name": "bench",
        "source": {"kind": "images", "path": str(seeds)},
        "runtime": {"device": device, "wave_size": wave_size, "overlap": overlap, "cpu_threads": cpu_threads},
        "stages": {
            "caption": {"model": "tiny:captioner-blip", "prompt": str(REPO / "prompts/caption_blip.txt")},
            "synthesize": {
                "model": "tiny:sd",
                "steps": 2,
                "width": size[0],
                "height": size[1],
                "png_compress_level": png_compress_level,
            },
            "phrases": {"model": "tiny:llm", "prompt": str(REPO / "prompts/phrases.txt"), "max_new_tokens": 24},
            "ground": {"model": "tiny:grounder"},
            "segment": {"model": "tiny:segmenter"},
            "negatives": {},
            "views": {"n_views": 3},
        },
    }
    path = folder / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def run_recipe(path: Path, out: Path) -> dict[str, Any]:
    """Runs the recipe (fresh) and returns its run report."""
    return run(load_recipe(path), out, fresh=True, progress=False)


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
