"""Training steps per second of the text-promptable SAM with cached image embeddings vs the image encoder run
every step, on full-size random-weight SAM ViT-B (1024-pixel input) and CLIP ViT-B text encoder (no download).

A step is the sft objective's forward, backward and optimizer step on a batch. "cached": the batch's images
were embedded once before timing (the trainer's default, frozen encoder); "recomputed": the embedding cache is
off, so SAM's image encoder runs on every image of every step (still frozen, without gradients).

    python benchmarks/train_cache.py [--batch 4] [--cached-steps 10] [--recomputed-steps 2] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import CLIPTextConfig, SamConfig, SamProcessor
from transformers.models.sam import SamImageProcessorPil

from syngen.train.config import SftConfig
from syngen.train.policy import TextPromptableSam
from syngen.train.sft import SftObjective


def vit_b_policy(device: str) -> TextPromptableSam:
    """The policy on SamConfig's defaults (SAM ViT-B) and CLIPTextConfig's defaults (CLIP ViT-B/32 text)."""
    from syngen.models.twins.clip import build_clip_text

    torch.manual_seed(0)
    policy = TextPromptableSam(SamConfig().to_dict(), CLIPTextConfig().to_dict())
    with tempfile.TemporaryDirectory() as tmp:  # a tokenizer over the tiny twins' vocabulary (ids fit CLIP's)
        build_clip_text(Path(tmp))
        from transformers import CLIPTokenizer

        policy.tokenizer = CLIPTokenizer.from_pretrained(tmp)
    policy.processor = SamProcessor(image_processor=SamImageProcessorPil())
    return policy.to(device)


def items(batch: int) -> list[dict]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(batch):
        mask = np.zeros((480, 640), bool)
        mask[100 + 10 * i : 300, 200:400] = True
        image = Image.fromarray(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
        out.append({"key": f"img{i}", "image": image, "phrase": "the red box on the left", "mask": mask})
    return out


def steps_per_second(policy: TextPromptableSam, cache: int, steps: int, batch: int, device: str) -> float:
    config = SftConfig(dataset_name="-", output_dir=tempfile.mkdtemp(), embedding_cache=cache)
    objective = SftObjective(config)
    objective.policy = policy
    optimizer = torch.optim.AdamW([p for p in policy.parameters() if p.requires_grad], lr=1e-5)
    data = objective.collate(items(batch))
    data = {k: v.to(device) if torch.is_tensor(v) else v for k, v in data.items()}

    def step() -> None:
        loss, _ = objective.loss(policy, data)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()

    step()  # warm-up; with the cache on, this fills it
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--cached-steps", type=int, default=10)
    parser.add_argument("--recomputed-steps", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    policy = vit_b_policy(args.device).train()
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    print(f"SAM ViT-B + CLIP text, {trainable / 1e6:.1f}M trainable parameters, batch {args.batch}, {args.device}")
    cached = steps_per_second(policy, 256, args.cached_steps, args.batch, args.device)
    print(f"cached embeddings:    {cached:.3f} steps/s ({args.cached_steps} steps)")
    recomputed = steps_per_second(policy, 0, args.recomputed_steps, args.batch, args.device)
    print(f"encoder every step:   {recomputed:.4f} steps/s ({args.recomputed_steps} steps)")
    print(f"ratio cached / recomputed: {cached / recomputed:.1f}x")


if __name__ == "__main__":
    main()
