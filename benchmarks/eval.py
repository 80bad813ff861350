"""Expressions per second of ``syngen eval ris`` on the tiny twins, on CPU, on a generated local copy of an
lmms-lab/RefCOCO split (the published parquet layout: one row per object, a flat polygon, sentence lists).

Each image holds ``--objects`` objects with ``--sentences`` sentences each, so an image's expressions share one
embedding. Timed per batch size, from a fresh eval folder (everything scored), then a rerun of the last one
(everything resumed from predictions.jsonl: reading and scoring only).

    python benchmarks/eval.py [--images 32] [--objects 3] [--sentences 2] [--batch-sizes 1,8] [--size 240x320]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import datasets
import numpy as np
import torch
from PIL import Image

from syngen.evaluate import evaluate_ris
from syngen.train.policy import TextPromptableSam


def refcoco_copy(root: Path, images: int, objects: int, sentences: int, height: int, width: int) -> Path:
    """``root/data/val-00000-of-00001.parquet`` in lmms-lab/RefCOCO's columns and types."""
    rng = np.random.default_rng(0)
    rows: dict[str, list] = {k: [] for k in ("question_id", "image", "question", "answer", "segmentation")}
    rows |= {"bbox": [], "iscrowd": [], "file_name": []}
    for i in range(images):
        picture = Image.fromarray(rng.integers(0, 255, (height, width, 3), dtype=np.uint8))
        for k in range(objects):
            x1, y1 = int(rng.integers(0, width // 2)), int(rng.integers(0, height // 2))
            x2, y2 = x1 + width // 4, y1 + height // 4
            rows["question_id"].append(f"{i}-{k}")
            rows["image"].append(picture)
            rows["question"].append("Provide a short description for this region.")
            rows["answer"].append([f"object {k} of picture {i}, sentence {j}" for j in range(sentences)])
            rows["segmentation"].append([x1, y1, x2, y1, x2, y2, x1, y2])
            rows["bbox"].append([x1, y1, x2 - x1, y2 - y1])
            rows["iscrowd"].append(0)
            rows["file_name"].append(f"COCO_train2014_{i:012d}.jpg")
    features = datasets.Features(
        {
            "question_id": datasets.Value("string"),
            "image": datasets.Image(),
            "question": datasets.Value("string"),
            "answer": datasets.Sequence(datasets.Value("string")),
            "segmentation": datasets.Sequence(datasets.Value("float32")),
            "bbox": datasets.Sequence(datasets.Value("float32")),
            "iscrowd": datasets.Value("int8"),
            "file_name": datasets.Value("string"),
        }
    )
    (root / "data").mkdir(parents=True)
    datasets.Dataset.from_dict(rows, features=features).to_parquet(str(root / "data" / "val-00000-of-00001.parquet"))
    return root


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
    data = refcoco_copy(tmp / "RefCOCO", args.images, args.objects, args.sentences, height, width)
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
