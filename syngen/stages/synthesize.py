"""synthesize: new images from captions with a text-to-image model.

Needs ``caption``; replaces ``image`` (PNG bytes) and adds ``width``, ``height`` and ``synth`` =
``{"seed", "index", "parent", "prompt"}``. Each input sample fans out to ``images_per_caption`` samples, the
i-th with id ``make_id(parent_id, "synthesize", i, seed)`` and an image seed derived from (seed, parent id, i),
so a rerun on the same device makes the same images. All prompts of a batch (× images_per_caption) are generated
in as few calls of at most ``batch_size`` images as possible, of near-equal sizes (7 images, batch_size 3: calls of
2, 2 and 3). An image's pixels depend on the number of images in its call, not on which prompts share it: see the
README's Limits. A sample with an empty caption is a failure of kind ``empty_caption``.

Example::

    stage = Synthesize(SynthesizeConfig(steps=2, images_per_caption=2), ctx)
    pipe, _ = load(stage.config.model, Synthesize.default_backend, "cpu", "float32")
    [[first, second]] = stage.process([{"id": "p1", "caption": "a red ball on a table"}], pipe)
"""

from __future__ import annotations

from itertools import pairwise

from datasets import Image as ImageFeature
from datasets import Value
from pydantic import Field

from syngen.export.schema import Column
from syngen.models.roles import TextToImage
from syngen.refs import ModelRef
from syngen.sample import Failure, Sample, image_bytes, item_seed, make_id
from syngen.stages.base import ModelStageConfig, Result, Stage, Update, model_field


class SynthesizeConfig(ModelStageConfig):
    """Settings of the synthesize stage."""

    model: ModelRef = model_field("tiny:sd", "Text-to-image diffusers checkpoint (Stable Diffusion 1.x/2.x or SDXL).")
    steps: int = Field(30, ge=1, le=1000, description="Denoising steps.")
    guidance_scale: float = Field(7.5, ge=0.0, description="Classifier-free guidance scale (<= 1 turns it off).")
    height: int | None = Field(
        None, ge=8, multiple_of=8, description="Image height in pixels, a multiple of 8; default: the checkpoint's."
    )
    width: int | None = Field(
        None, ge=8, multiple_of=8, description="Image width in pixels, a multiple of 8; default: the checkpoint's."
    )
    images_per_caption: int = Field(1, ge=1, le=64, description="Images made from each caption (fan-out).")
    negative_prompt: str = Field("", description="What the images should not show (empty: none).")
    seed: int = Field(0, ge=0, description="Base seed; each image's seed derives from it, the parent id and its index.")
    batch_size: int = Field(4, ge=1, description="Images per model call; halved and retried on CUDA out-of-memory.")


class Synthesize(Stage[SynthesizeConfig, TextToImage]):
    """Generates ``images_per_caption`` seeded images per caption."""

    name = "synthesize"
    needs = ("caption",)
    adds = ("image", "width", "height", "synth")
    publishes = {
        "image": Column(ImageFeature(), "the image synthesized from the caption (it replaces the seed image)"),
        "width": Column(Value("int32"), "its width in pixels"),
        "height": Column(Value("int32"), "its height in pixels"),
    }
    Config = SynthesizeConfig
    role = "text-to-image"
    default_backend = "diffusers"

    def image_seed(self, parent_id: str, index: int) -> int:
        """The generator seed of image ``index`` made from sample ``parent_id``."""
        return item_seed(self.config.seed, parent_id, index, bits=31)

    def process(self, samples: list[Sample], model: TextToImage) -> list[Result]:
        cfg = self.config
        jobs = [
            (n, index, self.image_seed(sample["id"], index))
            for n, sample in enumerate(samples)
            if sample["caption"].strip()
            for index in range(cfg.images_per_caption)
        ]
        images = []
        # as few calls as batch_size allows, of near-equal sizes: no lone last image (see README, Limits)
        calls = -(-len(jobs) // cfg.batch_size)
        bounds = [len(jobs) * i // calls for i in range(calls + 1)]
        for start, stop in pairwise(bounds):
            chunk = jobs[start:stop]
            images += model.generate(
                [samples[n]["caption"] for n, _, _ in chunk],
                [seed for _, _, seed in chunk],
                negative_prompt=cfg.negative_prompt or None,
                steps=cfg.steps,
                guidance_scale=cfg.guidance_scale,
                height=cfg.height,
                width=cfg.width,
            )
        updates: list[list[Update]] = [[] for _ in samples]
        for (n, index, seed), image in zip(jobs, images, strict=True):
            parent = samples[n]["id"]
            updates[n].append(
                {
                    "id": make_id(parent, "synthesize", index, cfg.seed),
                    "image": image_bytes(image),
                    "width": image.width,
                    "height": image.height,
                    "synth": {"seed": seed, "index": index, "parent": parent, "prompt": samples[n]["caption"]},
                }
            )
        return [made or Failure(kind="empty_caption", message="the caption is empty") for made in updates]
