"""Each policy built from twins (text-promptable SAM, SAM 3) sees the image and reads the phrase (before any
training)."""

from __future__ import annotations

import io

import pytest
import torch
from PIL import Image
from transformers import SamModel

from syngen.devtools.shapes import world_sample
from syngen.models.loading import build_tiny
from syngen.train.policies import Policy
from syngen.train.policy import EmbeddingCache, TextPromptableSam
from syngen.train.sam3_policy import Sam3Policy

# two outputs differ when some logit moves by more than this share of the largest logit; a policy blind to the
# image or the phrase gives 0 (up to float noise, below 1e-6). The SAM 3 twin at its random initialisation reads
# the phrase through two small fusion layers only, so its phrase effect is smaller.
TOLERANCE = {"text-promptable-sam": 0.05, "sam3": 0.005}


def picture(index: int) -> Image.Image:
    return Image.open(io.BytesIO(world_sample(index)["image"])).convert("RGB")


def logits(policy: Policy, images: list[Image.Image], phrases: list[str]) -> torch.Tensor:
    tokens = policy.tokenize(phrases)
    with torch.no_grad():
        return policy(policy.encode_images(images), tokens["input_ids"], tokens["attention_mask"])[0]


def differs(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest change between two logit maps, relative to the largest logit."""
    return float((a - b).abs().max() / torch.maximum(a.abs().max(), b.abs().max()))


@pytest.fixture(scope="module", params=["text-promptable-sam", "sam3"])
def policy(request: pytest.FixtureRequest) -> Policy:
    torch.manual_seed(0)
    if request.param == "sam3":
        return Sam3Policy.from_base("tiny:sam3").eval()
    return TextPromptableSam.from_parts("tiny:segmenter", "tiny:text-encoder", prompter_heads=2).eval()


def test_the_same_phrase_on_two_pictures_gives_different_logits(policy: Policy) -> None:
    out = logits(policy, [picture(0), picture(1)], ["red square", "red square"])
    assert differs(out[0], out[1]) > TOLERANCE[policy.name]


def test_two_phrases_on_one_picture_give_different_logits(policy: Policy) -> None:
    image = picture(0)
    out = logits(policy, [image, image], ["red square", "blue circle"])
    assert differs(out[0], out[1]) > TOLERANCE[policy.name]


@pytest.mark.parametrize(
    "init", [pytest.param(None, id="twin-config"), pytest.param(1e-10, id="transformers-default-init")]
)
def test_a_policy_built_from_a_sam_config_has_image_embeddings_of_normal_size(init: float | None) -> None:
    """transformers' SamVisionConfig defaults to initializer_range 1e-10 (embeddings ~1e-20): the policy raises it."""
    sam = SamModel.from_pretrained(build_tiny("segmenter")).config.to_dict()
    if init is not None:
        sam["vision_config"]["initializer_range"] = init
    text = TextPromptableSam.from_parts("tiny:segmenter", "tiny:text-encoder").text_encoder.config.to_dict()
    torch.manual_seed(0)
    fresh = TextPromptableSam(sam, text, prompter_heads=2)
    with torch.no_grad():
        pixels = torch.rand(1, 3, fresh.image_size, fresh.image_size)
        embedding = fresh.sam.vision_encoder(pixels)[0]
    assert embedding.abs().mean() > 1e-2


def test_a_cached_embedding_does_not_depend_on_its_batch_mates(policy: Policy) -> None:
    """A resumed run fills the cache in other batches than the uninterrupted one: embeddings must be bit-equal."""
    images = [picture(i) for i in range(3)]
    together = EmbeddingCache(limit=8).embeddings(policy, images, ["a", "b", "c"])
    alone = EmbeddingCache(limit=8).embeddings(policy, images[:1], ["a"])
    assert torch.equal(together[0], alone[0])
