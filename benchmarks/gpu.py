"""GPU: the grounding half of the pipeline (ground -> segment -> negatives) through syngen's stages against a
naive loop over the same models, in the same run.

With ``--full`` (the default on CUDA) the models are full-size and randomly initialised, of the classes
``recipes/synground.yaml`` names for these stages: GroundingDINO-T (Swin-T + BERT-base) and SAM ViT-B (weights do
not change speed; the tokenizer is the tiny twin's, built locally). Without it (the default on CPU) the tiny twins
run, at toy sizes. The naive loop does what a first script would: one image at a time, the detector once per
phrase, SAM re-embedding the image for every box and every negative attempt (one prompt per call). Both start from
decoded images, as the model stages of a run do.

Where torchvision imports, the image processors are torchvision-backed and syngen prepares the images on the GPU.

Prints images per second per stage and overall for both, their ratio, peak GPU memory, and per stage and overall
the share of the syngen run's wall time in which the GPU ran no kernel (from torch.profiler; CUDA only) and the
share spent outside model calls (GPU idle beyond it is waiting inside the calls: kernel launches, copies). With
``--profile N`` it also prints the N functions with the most CPU time in one more syngen pass (cProfile).

The box threshold is set so that about ``--detections`` queries per image pass (random weights score every
query alike; real weights at 0.35 pass a few dozen); the text threshold is 0.

With ``--sam3`` the same comparison runs SAM 3's path instead (``recipes/sam3.yaml``: ground with the ``sam3``
backend, whose regions carry their masks, then negatives on SAM 3's interactive head; no segment stage): syngen
embeds each image once for all its phrases and negatives; the naive loop calls SAM 3 once per phrase with the image
re-embedded, and its interactive head once per negative prompt, re-embedding too. ``--full``: a randomly initialised
SAM 3 of facebook/sam3's configuration (1008-pixel input); otherwise the ``tiny:sam3`` twin.

    python benchmarks/gpu.py [--images 8] [--phrases 4] [--size 1024] [--full | --toy] [--device cuda]
        [--dtype float32] [--detections 20] [--profile 0] [--sam3]
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import tempfile
import time
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from transformers import (
    AutoTokenizer,
    GroundingDinoConfig,
    GroundingDinoForObjectDetection,
    GroundingDinoProcessor,
    Sam3Config,
    Sam3Model,
    Sam3TrackerConfig,
    Sam3TrackerModel,
    SamConfig,
    SamModel,
    SamProcessor,
)
from transformers.models.grounding_dino import GroundingDinoImageProcessorPil
from transformers.models.sam import SamImageProcessorPil

from syngen.cpus import plan
from syngen.models.grounding_dino import GroundingDino
from syngen.models.loading import build_tiny
from syngen.models.sam3 import Sam3
from syngen.models.sam_hf import CachedSegmenter, HFSam
from syngen.sample import RUN_IMAGES, DecodedImages, image_bytes, load_image
from syngen.stages.base import Context, Stage
from syngen.stages.ground import Ground, GroundConfig
from syngen.stages.negatives import Negatives, NegativesConfig
from syngen.stages.segment import Segment, SegmentConfig
from syngen.threads import Pool, on_gpu

WORDS = ["red ball", "dog", "blue car", "tree", "person", "table", "cat", "house", "bird", "window"]


def full_size_models(folder: Path) -> tuple[Path, Path]:
    """Random-weight GroundingDINO-T and SAM ViT-B saved under ``folder`` (processors at the real sizes; where
    torchvision imports, transformers loads their torchvision-backed versions, as for a real checkpoint)."""
    torch.manual_seed(0)
    dino, sam = folder / "grounding-dino-t", folder / "sam-vit-b"
    GroundingDinoForObjectDetection(GroundingDinoConfig()).save_pretrained(dino)
    tokenizer = GroundingDinoProcessor.from_pretrained(build_tiny("grounder")).tokenizer
    GroundingDinoProcessor(image_processor=GroundingDinoImageProcessorPil(), tokenizer=tokenizer).save_pretrained(dino)
    SamModel(SamConfig()).save_pretrained(sam)
    SamProcessor(image_processor=SamImageProcessorPil()).save_pretrained(sam)
    return dino, sam


def full_size_sam3(folder: Path) -> Path:
    """A random-weight SAM 3 of facebook/sam3's configuration (detector, and its interactive head in tracker/ as the
    tiny twin keeps it) saved under ``folder``, with the twin's tokenizer and facebook/sam3's 1008-pixel input."""
    torch.manual_seed(0)
    path, twin = folder / "sam3", build_tiny("sam3")
    detector = Sam3Model(Sam3Config())
    detector.save_pretrained(path)
    Sam3TrackerModel(Sam3TrackerConfig(vision_config=detector.config.vision_config.to_dict())).save_pretrained(
        path / "tracker"
    )
    AutoTokenizer.from_pretrained(twin).save_pretrained(path)
    preprocessor = (twin / "preprocessor_config.json").read_text().replace('"height": 224', '"height": 1008')
    (path / "preprocessor_config.json").write_text(preprocessor.replace('"width": 224', '"width": 1008'))
    return path


def make_samples(count: int, phrases: int, size: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(0)
    return [
        {
            "id": f"img{i}",
            "image": image_bytes(Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8))),
            "phrases": list(rng.choice(WORDS, phrases, replace=False)),
        }
        for i in range(count)
    ]


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def gpu_busy_seconds(prof: torch.profiler.profile) -> float:
    """Seconds of GPU kernel time a profiler recorded."""
    return sum(e.self_device_time_total for e in prof.key_averages() if e.self_device_time_total > 0) / 1e6


def box_threshold(model: GroundingDino | Sam3, sample: dict[str, Any], detections: int) -> float:
    """The box score that about ``detections`` of the model's queries pass on ``sample`` with all its phrases
    (in one prompt for GroundingDINO; random weights score every query alike; real ones at 0.35 pass a few
    dozen)."""
    if isinstance(model, Sam3):
        model.embed([load_image(sample)], ["threshold"])
        found = model.ground(["threshold"], [sample["phrases"]], 0.0)[0]
        scores = sorted((instance["score"] for instances in found for instance in instances), reverse=True)
    else:
        prompt = " ".join(f"{phrase}." for phrase in sample["phrases"])
        scores = sorted((d["score"] for d in model.detect([load_image(sample)], [prompt], 0.0, 0.0)[0]), reverse=True)
    return scores[min(detections, len(scores) - 1)]


def finishing(stage: Stage, chunk: list[dict], model: Any, pool: Pool) -> list[tuple[dict, Future]]:
    """As the engine does beside a GPU: the batch's model calls here, each sample's finish in ``pool``."""
    raws = stage.process(chunk, model)
    return [(sample, pool.submit(stage.finish, sample, raw)) for sample, raw in zip(chunk, raws, strict=True)]


def merged(results: list[tuple[dict, Future]]) -> list[dict]:
    """Each sample updated with its result (waited for when it is still finishing beside the model)."""
    return [sample | future.result() for sample, future in results]


def pipeline(
    device: str, batch: int, threshold: float, dino: GroundingDino | None, sam: HFSam | None, sam3: Sam3 | None
) -> list[tuple[Stage, Any]]:
    """The stages with their models: ground (GroundingDINO), segment and negatives (SAM); or, with ``sam3``, ground
    and negatives on SAM 3 (its regions carry their masks)."""
    ctx = Context(recipe_dir=Path("."), device=device)
    config = {"box_threshold": threshold, "text_threshold": 0.0, "batch_size": batch}
    negatives = Negatives(NegativesConfig(), ctx)
    if sam3 is not None:  # the stage runs the model passed in; its model setting only names the backend
        return [(Ground(GroundConfig(model="tiny:sam3", **config), ctx), sam3), (negatives, sam3)]
    ground, segment = Ground(GroundConfig(**config), ctx), Segment(SegmentConfig(batch_size=batch), ctx)
    return [(ground, dino), (segment, sam), (negatives, sam)]


def syngen_path(
    samples: list[dict],
    stages: list[tuple[Stage, Any]],
    device: str,
    batch: int,
    busy: dict[str, float] | None = None,
    inside: dict[str, float] | None = None,
) -> dict[str, float]:
    """Seconds per stage through the stages (batched, one embedding per image, batched negatives). With ``busy``
    (CUDA), each stage runs under torch.profiler and ``busy`` gets its seconds of GPU kernel time; ``inside`` gets
    the seconds each stage spent inside its adapter's model calls."""
    seconds: dict[str, float] = {}
    pool = Pool(max(1, plan(gpu=on_gpu(device)).pool))
    for stage, model in stages:
        cuda_only = [torch.profiler.ProfilerActivity.CUDA]
        with torch.profiler.profile(activities=cuda_only) if busy is not None else contextlib.nullcontext() as prof:
            start, model_s = time.perf_counter(), model.model_seconds
            out, held = [], []  # as the engine does: a batch's results are waited for after the next batch's call
            for i in range(0, len(samples), batch):
                chunk = samples[i : i + batch]
                results = finishing(stage, chunk, model, pool)
                out, held = out + merged(held), results
            out += merged(held)
            sync(device)
            seconds[stage.name] = time.perf_counter() - start
        if inside is not None:
            inside[stage.name] = model.model_seconds - model_s
        if busy is not None:
            busy[stage.name] = gpu_busy_seconds(prof)
        samples = out
    return seconds


def naive_path(samples: list[dict], dino: GroundingDino, sam: HFSam, device: str, threshold: float) -> dict[str, float]:
    """Seconds per stage of the naive loop: one image, one phrase, one box, one prompt at a time."""
    seconds = dict.fromkeys(("ground", "segment", "negatives"), 0.0)
    for n, sample in enumerate(samples):
        image = load_image(sample)
        start = time.perf_counter()
        boxes = []
        for phrase in sample["phrases"]:
            dets = dino.detect([image], [phrase + "."], threshold, 0.0)[0]
            boxes += [max(dets, key=lambda d: d["score"])["box"]] if dets else []
        sync(device)
        seconds["ground"] += time.perf_counter() - start
        start = time.perf_counter()
        masks = []
        for b, box in enumerate(boxes):
            sam.embed([image], [f"naive-{n}-{b}"])  # re-embeds for every box
            masks.append(sam.predict(f"naive-{n}-{b}", boxes=np.array([box], np.float32))[0][0])
        sync(device)
        seconds["segment"] += time.perf_counter() - start
        seconds["negatives"] += naive_negatives(sam, image, boxes, masks, f"naive-{n}", device)
    return seconds


def naive_sam3_path(samples: list[dict], sam3: Sam3, device: str, threshold: float) -> dict[str, float]:
    """Seconds per stage of the naive SAM 3 loop: SAM 3 once per phrase with the image re-embedded each time, its
    best instance kept, then negatives one prompt at a time (:func:`naive_negatives`)."""
    seconds = dict.fromkeys(("ground", "negatives"), 0.0)
    for n, sample in enumerate(samples):
        image = load_image(sample)
        start = time.perf_counter()
        boxes, masks = [], []
        for p, phrase in enumerate(sample["phrases"]):
            sam3.embed([image], [f"naive-{n}-{p}"])  # re-embeds for every phrase
            [[instances]] = sam3.ground([f"naive-{n}-{p}"], [[phrase]], threshold)
            boxes += [instances[0]["box"]] if instances else []
            masks += [instances[0]["mask"]] if instances else []
        sync(device)
        seconds["ground"] += time.perf_counter() - start
        seconds["negatives"] += naive_negatives(sam3, image, boxes, masks, f"naive-{n}", device)
    return seconds


def naive_negatives(sam: CachedSegmenter, image: Image.Image, boxes: list, masks: list, key: str, device: str) -> float:
    """Seconds of the naive negatives of one image: two tries per wanted negative, one prompt per call, the image
    re-embedded every time."""
    cfg = NegativesConfig()
    start = time.perf_counter()
    for b, (box, mask) in enumerate(zip(boxes, masks, strict=True)):
        for slot in range(cfg.boundary_per_mask + cfg.semantic_per_mask):
            for attempt in range(2):
                sam.embed([image], [f"{key}-{b}-{slot}-{attempt}"])
                ys, xs = np.nonzero(mask) if mask.any() else ([0], [0])
                point = np.array([[[xs[0], ys[0]]]], np.float32)
                prompt = {"boxes": np.array([box], np.float32), "points": point, "labels": np.array([[1]])}
                sam.predict(f"{key}-{b}-{slot}-{attempt}", **prompt)
    sync(device)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=8)
    parser.add_argument("--phrases", type=int, default=4)
    parser.add_argument("--size", type=int, default=None, help="image side; default 1024 full, 256 toy")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--profile", type=int, default=0, help="print the N functions with the most CPU time")
    parser.add_argument("--detections", type=int, default=20, help="queries per image above the box threshold")
    parser.add_argument("--sam3", action="store_true", help="SAM 3's path (ground with masks, negatives) instead")
    size_group = parser.add_mutually_exclusive_group()
    size_group.add_argument("--full", action="store_true", default=None)
    size_group.add_argument("--toy", dest="full", action="store_false")
    args = parser.parse_args()
    full = args.device.startswith("cuda") if args.full is None else args.full
    size = args.size or (1024 if full else 256)

    dino = sam = sam3 = None
    with tempfile.TemporaryDirectory() as tmp:
        if args.sam3:
            sam3 = Sam3(full_size_sam3(Path(tmp)) if full else build_tiny("sam3"), device=args.device, dtype=args.dtype)
        else:
            dino_path, sam_path = (
                full_size_models(Path(tmp)) if full else (build_tiny("grounder"), build_tiny("segmenter"))
            )
            dino = GroundingDino(dino_path, device=args.device, dtype=args.dtype)
            sam = HFSam(sam_path, device=args.device, dtype=args.dtype)
    segmenter = sam3 or sam
    assert segmenter is not None
    segmenter.cache_limit = 4 * args.images
    samples = make_samples(args.images, args.phrases, size)
    # decoded before the timing, for both paths: in a run the source (in its thread, ahead of the model stages) or
    # synthesize hands the images on decoded
    RUN_IMAGES.set(DecodedImages(len(samples)))
    for sample in samples:
        load_image(sample)
    grounder = sam3 or dino
    assert grounder is not None
    threshold = box_threshold(grounder, samples[0], args.detections)
    stages = pipeline(args.device, args.batch, threshold, dino, sam, sam3)

    def naive(chunk: list[dict]) -> dict[str, float]:
        if sam3 is not None:
            return naive_sam3_path(chunk, sam3, args.device, threshold)
        assert dino is not None and sam is not None
        return naive_path(chunk, dino, sam, args.device, threshold)

    syngen_path(samples[:1], stages, args.device, args.batch)  # warm-up
    naive(samples[:1])
    cuda = args.device.startswith("cuda")
    busy: dict[str, float] | None = {} if cuda else None
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    inside: dict[str, float] = {}
    fast = syngen_path(samples, stages, args.device, args.batch, busy, inside)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else 0.0
    slow = naive(samples)

    if args.sam3:
        kind = "full-size random-weight SAM 3" if full else "tiny twin tiny:sam3 (toy sizes)"
        processors = ("syngen's own (torch) for SAM 3",)
    else:
        kind = "full-size random-weight GroundingDINO-T + SAM ViT-B" if full else "tiny twins (toy sizes)"
        assert dino is not None and sam is not None
        processors = type(dino.processor.image_processor).__name__, type(sam.processor.image_processor).__name__
    name = torch.cuda.get_device_name() if cuda else f"CPU ({torch.get_num_threads()} threads)"
    print(f"{kind}, {args.images} images of {size}x{size}, {args.phrases} phrases each, on {name}, {args.dtype}")
    print(f"box threshold {threshold:.4f} (about {args.detections} detections per image)")
    print(f"image processors: {', '.join(processors)}")
    print(f"{'stage':>10} {'syngen img/s':>13} {'naive img/s':>12} {'speed-up':>9} {'GPU idle':>9} {'outside':>8}")
    names = list(fast)
    rows = [(stage, fast[stage], slow[stage], busy and busy[stage], inside[stage]) for stage in names]
    rows.append(("overall", sum(fast.values()), sum(slow.values()), busy and sum(busy.values()), sum(inside.values())))
    for stage, fast_s, slow_s, busy_s, inside_s in rows:
        a, b = args.images / fast_s, args.images / slow_s
        idle = f"{100 * max(0.0, 1 - busy_s / fast_s):8.0f}%" if busy else f"{'-':>9}"
        print(f"{stage:>10} {a:13.2f} {b:12.2f} {a / b:9.1f}x {idle} {100 * max(0.0, 1 - inside_s / fast_s):7.0f}%")
    if cuda:
        print(f"peak GPU memory {peak:.1f} GiB (syngen run); GPU idle: share of wall time with no kernel running")
    else:
        print("peak GPU memory and GPU idle share: CUDA only")
    print("outside: share of the syngen run's wall time outside model calls (the stages' own work on the main thread)")
    if args.profile:
        profiler = cProfile.Profile()
        profiler.runcall(syngen_path, samples, stages, args.device, args.batch)
        pstats.Stats(profiler).sort_stats("tottime").print_stats(args.profile)


if __name__ == "__main__":
    main()
