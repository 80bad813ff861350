"""caption: a caption (or detailed description) of each image.

Needs ``image``; adds ``caption``. The prompt file's text goes to the captioner: BLIP continues it as a text
prefix (the prefix is not part of the caption), LLaVA answers it as an instruction. An empty caption is a
failure of kind ``empty_caption``.

Example::

    stage = Caption(CaptionConfig(), ctx)
    captioner, _ = load(stage.config.model, Caption.default_backend, "cpu", "float32")
    [update] = stage.process([sample], captioner)  # {"caption": "..."}
"""

from __future__ import annotations

from datasets import Value
from pydantic import Field

from syngen.columns import Column
from syngen.models.roles import Captioner
from syngen.refs import ModelRef
from syngen.sample import Failure, Sample, load_image
from syngen.settings import SomePath
from syngen.stages.base import Context, ModelStageConfig, Outcome, Stage, model_field


class CaptionConfig(ModelStageConfig):
    """Settings of the caption stage."""

    model: ModelRef = model_field(
        "tiny:captioner-blip", "Captioner: BLIP (backend blip, the default) or LLaVA (backend llava)."
    )
    prompt: SomePath = Field(
        "prompts/caption_blip.txt",
        description="Prompt file: BLIP's text prefix (may be empty), or the instruction for LLaVA "
        "(prompts/caption_detailed.txt asks for a detailed description, as SynGround does).",
    )
    max_new_tokens: int = Field(60, ge=1, le=2048, description="Longest caption, in tokens.")


class Caption(Stage[CaptionConfig, Captioner]):
    """Captions each sample's image with the configured captioner."""

    name = "caption"
    needs = ("image",)
    adds = ("caption",)
    publishes = {"caption": Column(Value("string"), "the captioner's description of the image")}
    Config = CaptionConfig
    role = "captioner"
    default_backend = "blip"

    def __init__(self, config: CaptionConfig, ctx: Context):
        super().__init__(config, ctx)
        self.prompt = ctx.resolve_path(config.prompt).read_text(encoding="utf-8").strip()

    def process(self, samples: list[Sample], model: Captioner) -> list[Outcome]:
        images = [load_image(sample) for sample in samples]
        captions = model.caption(images, self.prompt, self.config.max_new_tokens)
        empty = Failure(kind="empty_caption", message="the captioner returned no text")
        return [{"caption": caption} if caption.strip() else empty for caption in captions]
