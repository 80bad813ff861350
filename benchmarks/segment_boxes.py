"""Segment-stage cost per image with 1 box and with many boxes, on a ViT-B-sized SAM (random weights, no download).

The image embedding is computed once per image and all boxes share one mask-decoder call, so many boxes should
cost little more than one: the script prints seconds per image for both and their ratio, and exits with status 1
when the ratio passes 1.5.

    python benchmarks/segment_boxes.py [--images 2] [--boxes 16] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import SamConfig, SamModel, SamProcessor
from transformers.models.sam import SamImageProcessorPil

from syngen.models.sam_hf import HFSam
from syngen.sample import image_bytes
from syngen.stages.base import Context
from syngen.stages.segment import Segment, SegmentConfig

MAX_RATIO = 1.5


def save_vit_b(path: Path) -> None:
    """A SAM with SamConfig's defaults (ViT-B image encoder, 1024-pixel input), randomly initialised."""
    torch.manual_seed(0)
    SamModel(SamConfig()).save_pretrained(path)
    SamProcessor(image_processor=SamImageProcessorPil()).save_pretrained(path)


def samples(tag: str, count: int, boxes: int, rng: np.random.Generator) -> list[dict]:
    """``count`` noise images of 640 x 480, each with ``boxes`` random boxes."""
    out = []
    for i in range(count):
        pixels = rng.integers(0, 255, size=(480, 640, 3), dtype=np.uint8)
        corners = rng.uniform(0, 400, size=(boxes, 2))
        sizes = rng.uniform(40, 200, size=(boxes, 2))
        regions = [
            {"phrase": f"thing {j}", "box": [*corner, *(corner + size)], "box_score": 1.0}
            for j, (corner, size) in enumerate(zip(corners, sizes, strict=True))
        ]
        out.append({"id": f"{tag}-{i}", "image": image_bytes(Image.fromarray(pixels)), "regions": regions})
    return out


def seconds_per_image(stage: Segment, model: HFSam, batch: list[dict]) -> float:
    start = time.perf_counter()
    stage.outcomes(batch, model)
    return (time.perf_counter() - start) / len(batch)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2, help="images per setting")
    parser.add_argument("--boxes", type=int, default=16, help="boxes per image in the many-box setting")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        save_vit_b(Path(folder))
        model = HFSam(folder, device=args.device)
        print(f"built and loaded a ViT-B SAM in {time.perf_counter() - start:.1f} s on {args.device}")
    stage = Segment(SegmentConfig(batch_size=args.images), Context(recipe_dir=Path(".")))
    seconds_per_image(stage, model, samples("warmup", 1, 1, rng))
    one = seconds_per_image(stage, model, samples("one", args.images, 1, rng))
    many = seconds_per_image(stage, model, samples("many", args.images, args.boxes, rng))
    start = time.perf_counter()
    model.predict("many-0", boxes=np.array([[10, 10, 200, 200]] * args.boxes, dtype=np.float32))
    decode = time.perf_counter() - start

    ratio = many / one
    print(f"1 box per image:      {one:.2f} s/image")
    print(f"{args.boxes} boxes per image:    {many:.2f} s/image")
    print(f"ratio:                {ratio:.2f} (limit {MAX_RATIO})")
    print(f"{args.boxes} boxes on a cached embedding (decoder only): {decode:.3f} s")
    print(f"images through the encoder: {model.encoder_calls} (warm-up included)")
    return 0 if ratio <= MAX_RATIO else 1


if __name__ == "__main__":
    raise SystemExit(main())
