"""Expressions per second of ``syngen eval ris`` on the tiny twins, on CPU, on a generated local copy of an
lmms-lab/RefCOCO split (the published parquet layout: one row per object, a flat polygon, sentence lists).

Each image holds ``--objects`` objects with ``--sentences`` sentences each, so an image's expressions share one
embedding. Timed per batch size, from a fresh eval folder (everything scored), then a rerun of the last one
(everything resumed from predictions.jsonl: reading and scoring only).

    python benchmarks/eval.py [--images 32] [--objects 3] [--sentences 2] [--batch-sizes 1,8] [--size 240x320]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # this checkout's syngen

from syngen.devtools.layouts import lmms_refcoco  # noqa: E402
from syngen.eval.evaluate import evaluate_ris  # noqa: E402
from syngen.train.policy import TextPromptableSam  # noqa: E402


def objects(images: int, per_image: int, sentences: int, height: int, width: int) -> list:
    """(image seed, rectangle, sentences) per object, as syngen/devtools/layouts.py's ``lmms_refcoco`` takes."""
    rng = np.random.default_rng(0)
    out = []
    for i in range(images):
        for k in range(per_image):
            x1, y1 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
            rectangle = (x1, y1, x1 + width // 4, y1 + height // 4)
            out.append((i, rectangle, [f"object {k} of picture {i}, sentence {j}" for j in range(sentences)]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--objects", type=int, default=3)
    parser.add_argument("--sentences", type=int, default=2)
    parser.add_argument("--batch-sizes", default="1,8")
    parser.add_argument("--size", default="240x320", help="image height x width")
    args = parser.parse_args()
    height, width = map(int, args.size.split("x"))
    tmp = Path(tempfile.mkdtemp())
    found = objects(args.images, args.objects, args.sentences, height, width)
    data = lmms_refcoco(tmp / "RefCOCO", {"val": found}, (height, width))
    model = tmp / "policy"
    TextPromptableSam.from_parts("tiny:segmenter", "tiny:text-encoder").save_pretrained(model)
    n = args.images * args.objects * args.sentences
    print(f"tiny twins, CPU, {torch.get_num_threads()} threads; {n} expressions on {args.images} images {args.size}")
    for batch in map(int, args.batch_sizes.split(",")):
        start = time.perf_counter()
        report = evaluate_ris(str(model), str(data), batch_size=batch, output_dir=tmp / f"eval-{batch}", device="cpu")
        seconds = time.perf_counter() - start
        print(
            f"batch {batch:3d}: {n / seconds:7.1f} expressions/s ({seconds:.1f} s, "
            f"{report['images_encoded']} images encoded, mIoU {report['metrics']['val']['mIoU']:.3f})"
        )
    start = time.perf_counter()
    report = evaluate_ris(str(model), str(data), batch_size=batch, output_dir=tmp / f"eval-{batch}", device="cpu")
    print(f"rerun, all {report['resumed']} resumed: {time.perf_counter() - start:.1f} s")


if __name__ == "__main__":
    main()
