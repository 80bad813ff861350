"""synthesize: new images from captions with a text-to-image model.

Needs ``caption``; replaces ``image`` (PNG bytes) and adds ``width``, ``height`` and ``synth`` =
``{"seed", "index", "parent", "prompt"}``. Each input sample fans out to ``images_per_caption`` samples, the
i-th with id ``make_id(parent_id, "synthesize", i, seed)`` and an image seed derived from (seed, parent id, i),
so a rerun on the same device makes the same images. All prompts of a batch (× images_per_caption) are generated
in as few calls of at most ``batch_size`` images as possible, of near-equal sizes (7 images, batch_size 3: calls of
2, 2 and 3). An image's pixels depend on the number of images in its call, not on which prompts share it: see
docs/limits.md. After a CUDA out-of-memory error the runner halves that call size (:meth:`Synthesize.shrink`), down
to one image per call. :meth:`Synthesize.finish` PNG-encodes a sample's images. A sample with an empty caption is a
failure of kind ``empty_caption``.

Example::

    stage = Synthesize(SynthesizeConfig(steps=2, images_per_caption=2), ctx)
    pipe, _ = load(stage.config.model, Synthesize.default_backend, "cpu", "float32")
    [[first, second]] = stage.outcomes([{"id": "p1", "caption": "a red ball on a table"}], pipe)
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

from datasets import Image as ImageFeature
from datasets import Value
from PIL import Image
from pydantic import Field, field_validator

from syngen.columns import Column
from syngen.models.loading import resolve
from syngen.models.roles import TextToImage
from syngen.refs import ModelRef
from syngen.sample import Failure, Sample, image_bytes, item_seed, keep_decoded, make_id
from syngen.settings import MAX_SIDE, Seed
from syngen.stages.base import ADDED_LATER, RUNTIME_ONLY, Context, ModelStageConfig, Stage, Update, model_field

Made = tuple[Update, Image.Image]  # an image made and its update (every column but ``image``)


class SynthesizeConfig(ModelStageConfig):
    """Settings of the synthesize stage."""

    model: ModelRef = model_field("tiny:sd", "Text-to-image diffusers checkpoint (Stable Diffusion 1.x/2.x or SDXL).")
    steps: int = Field(30, ge=1, le=1000, description="Denoising steps.")
    guidance_scale: float = Field(7.5, ge=0.0, description="Classifier-free guidance scale (<= 1 turns it off).")
    height: int | None = Field(
        None,
        ge=8,
        le=MAX_SIDE,
        multiple_of=8,
        description="Image height in pixels, a multiple of 8; default: the checkpoint's.",
    )
    width: int | None = Field(
        None,
        ge=8,
        le=MAX_SIDE,
        multiple_of=8,
        description="Image width in pixels, a multiple of 8; default: the checkpoint's.",
    )
    images_per_caption: int = Field(1, ge=1, le=64, description="Images made from each caption (fan-out).")
    negative_prompt: str = Field("", description="What the images should not show (empty: none).")
    seed: Seed = Field(0, description="Base seed; each image's seed derives from it, the parent id and its index.")
    batch_size: int = Field(4, ge=1, description="Images per model call; halved and retried on CUDA out-of-memory.")
    scheduler: str | None = Field(
        None,
        description="A diffusers scheduler class to sample with (e.g. DPMSolverMultistepScheduler, built from the "
        "checkpoint's scheduler config); none: the checkpoint's own.",
        json_schema_extra=ADDED_LATER,
    )
    variant: str | None = Field(
        None,
        description="Weight variant to load (e.g. fp16: half the download and load time); none: the full weights.",
        json_schema_extra=ADDED_LATER,
    )
    vae_tiling: bool = Field(
        False,
        description="Decode latents in tiles: large images in little GPU memory (seams may differ slightly).",
        json_schema_extra=ADDED_LATER,
    )
    cpu_offload: bool = Field(
        False,
        description="Keep the pipeline's models in CPU memory and move each to the GPU only while it runs (a small "
        "GPU; slower). Ignored on CPU.",
        json_schema_extra=RUNTIME_ONLY,
    )
    png_compress_level: int | None = Field(
        None,
        ge=0,
        le=9,
        description="zlib level of the made images' PNGs: 1 is the fastest to encode, 9 the smallest; none: PIL's "
        "default (6). The pixels are the same at every level (PNG is lossless), so stored results stay valid.",
        json_schema_extra=RUNTIME_ONLY,
    )
    vae_slicing: bool = Field(
        False,
        description="Decode a batch's latents one image at a time (less GPU memory, same images).",
        json_schema_extra=RUNTIME_ONLY,
    )
    vae: ModelRef | None = Field(
        None,
        description="An AutoencoderKL (Hub id with optional revision, or local folder) that replaces the "
        "checkpoint's VAE, loaded in the model's dtype. For SDXL in float16 use madebyollin/sdxl-vae-fp16-fix: "
        "SDXL's own VAE overflows in float16, so diffusers decodes with it in float32 (more GPU memory, slower), "
        "while the fp16-fix VAE (force_upcast false in its config) decodes in float16 with near-identical images. "
        "None: the checkpoint's own.",
        json_schema_extra=ADDED_LATER,
    )

    @field_validator("scheduler")
    @classmethod
    def _scheduler(cls, value: str | None) -> str | None:
        if value is not None:
            import diffusers

            if not value.endswith("Scheduler") or not hasattr(diffusers, value):
                raise ValueError("not a diffusers scheduler class (e.g. DPMSolverMultistepScheduler)")
        return value

    @field_validator("vae")
    @classmethod
    def _vae(cls, value: ModelRef | None) -> ModelRef | None:
        if value is not None and value.tiny is not None:
            raise ValueError("a VAE's Hub id or local folder; tiny twins are whole pipelines, not VAEs")
        return value


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

    def __init__(self, config: SynthesizeConfig, ctx: Context):
        super().__init__(config, ctx)
        self.call_size = config.batch_size  # images per model call; halved on out-of-memory

    def model_options(self) -> dict[str, Any]:
        """The diffusers options the pipeline is loaded with (``vae``: the resolved folder of the replacement VAE)."""
        options = self.config.model_dump(include={"scheduler", "variant", "vae_tiling", "cpu_offload", "vae_slicing"})
        return options | {"vae": None if self.config.vae is None else resolve(self.config.vae)}

    def shrink(self) -> bool:
        if self.call_size == 1:
            return False
        self.call_size //= 2
        return True

    def image_seed(self, parent_id: str, index: int) -> int:
        """The generator seed of image ``index`` made from sample ``parent_id``."""
        return item_seed(self.config.seed, parent_id, index, bits=31)

    def process(self, samples: list[Sample], model: TextToImage) -> list[list[Made] | Failure]:
        """Per sample, its ``images_per_caption`` updates each with its image (encoded by :meth:`finish`), or a
        Failure."""
        cfg = self.config
        jobs = [
            (n, index, self.image_seed(sample["id"], index))
            for n, sample in enumerate(samples)
            if sample["caption"].strip()
            for index in range(cfg.images_per_caption)
        ]
        images: list[Image.Image] = []
        # as few calls as call_size allows, of near-equal sizes: no lone last image (see docs/limits.md)
        calls = -(-len(jobs) // self.call_size)
        bounds = [len(jobs) * i // calls for i in range(calls + 1)]
        for start, stop in pairwise(bounds):
            chunk = jobs[start:stop]
            made = model.generate(
                [samples[n]["caption"] for n, _, _ in chunk],
                [seed for _, _, seed in chunk],
                negative_prompt=cfg.negative_prompt or None,
                steps=cfg.steps,
                guidance_scale=cfg.guidance_scale,
                height=cfg.height,
                width=cfg.width,
            )
            images += made
        updates: list[list[Made]] = [[] for _ in samples]
        for (n, index, seed), image in zip(jobs, images, strict=True):
            parent = samples[n]["id"]
            update = {
                "id": make_id(parent, "synthesize", index, cfg.seed),
                "width": image.width,
                "height": image.height,
                "synth": {"seed": seed, "index": index, "parent": parent, "prompt": samples[n]["caption"]},
            }
            updates[n].append((update, image))
        return [made or Failure(kind="empty_caption", message="the caption is empty") for made in updates]

    def finish(self, sample: Sample, made: list[Made]) -> list[Update]:
        """The sample's updates with their images PNG-encoded at ``png_compress_level`` (None: PIL's default); each
        image is kept decoded under its bytes, so the next stages need not decode it."""
        level = self.config.png_compress_level
        updates = []
        for update, image in made:
            data = image_bytes(image, "PNG", **({} if level is None else {"compress_level": level}))
            keep_decoded(data, image)
            updates.append(update | {"image": data})
        return updates
