"""The diffusers text-to-image adapter on its SD and SDXL twins: classes, sizes, per-image seeds."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from transformers import CLIPTokenizer

from syngen.models.diffusers_t2i import DiffusersTextToImage
from syngen.models.loading import build_tiny
from syngen.models.twins.vocab import PUNCTUATION, WORDS, clip_bpe

# model_index.json of stable-diffusion-v1-5/stable-diffusion-v1-5 and stabilityai/stable-diffusion-xl-base-1.0
REAL = {
    "sd": {
        "_class_name": "StableDiffusionPipeline",
        "vae": "AutoencoderKL",
        "text_encoder": "CLIPTextModel",
        "tokenizer": "CLIPTokenizer",
        "unet": "UNet2DConditionModel",
        "scheduler": "PNDMScheduler",
        "safety_checker": "StableDiffusionSafetyChecker",
        "feature_extractor": "CLIPImageProcessor",
    },
    "sdxl": {
        "_class_name": "StableDiffusionXLPipeline",
        "vae": "AutoencoderKL",
        "text_encoder": "CLIPTextModel",
        "text_encoder_2": "CLIPTextModelWithProjection",
        "tokenizer": "CLIPTokenizer",
        "tokenizer_2": "CLIPTokenizer",
        "unet": "UNet2DConditionModel",
        "scheduler": "EulerDiscreteScheduler",
    },
}
PROMPTS = ["a red ball on the table", "a small dog on the grass"]


@pytest.fixture(scope="module", params=["sd", "sdxl"])
def t2i(request: pytest.FixtureRequest) -> DiffusersTextToImage:
    adapter = DiffusersTextToImage(build_tiny(request.param))
    adapter.variant = request.param
    return adapter


def generate(t2i: DiffusersTextToImage, prompts: list[str], seeds: list[int], **kwargs) -> list[np.ndarray]:
    settings = dict(negative_prompt="blurry", steps=2, guidance_scale=5.0) | kwargs
    return [np.asarray(image) for image in t2i.generate(prompts, seeds, **settings)]


def test_twin_uses_the_real_checkpoint_classes(t2i: DiffusersTextToImage) -> None:
    real = REAL[t2i.variant]  # type: ignore[attr-defined]
    assert type(t2i.pipe).__name__ == real["_class_name"]
    loaded = {name: type(component).__name__ for name, component in t2i.pipe.components.items()}
    index = json.loads((build_tiny(t2i.variant) / "model_index.json").read_text())  # type: ignore[attr-defined]
    for name, cls in real.items():
        if name in ("safety_checker", "feature_extractor"):  # the real SD has them, the twin none
            assert index[name] == [None, None] and loaded[name] == "NoneType"
        elif name != "_class_name":
            assert loaded[name] == cls, name


def test_images_are_seeded_per_prompt(t2i: DiffusersTextToImage) -> None:
    first, second = generate(t2i, PROMPTS, [1, 2])
    assert first.shape == second.shape == (64, 64, 3)
    assert np.array_equal(generate(t2i, PROMPTS, [1, 2])[0], first)  # same seeds, same pixels
    # the same seed alone gives the same image up to float rounding of a different batch size
    alone = generate(t2i, PROMPTS[1:], [2])[0]
    assert np.abs(alone.astype(int) - second).max() <= 2
    other = generate(t2i, PROMPTS[1:], [3])[0]
    assert np.abs(other.astype(int) - second).mean() > 5


@pytest.mark.parametrize(("height", "width"), [(72, 40), (128, 96)], ids=["odd-latent-side", "landscape"])
def test_any_multiple_of_8_size(t2i: DiffusersTextToImage, height: int, width: int) -> None:
    [image] = t2i.generate(["a cat"], [0], steps=1, guidance_scale=1.0, height=height, width=width)
    assert image.size == (width, height) and image.mode == "RGB"


def test_generate_needs_one_seed_per_prompt(t2i: DiffusersTextToImage) -> None:
    with pytest.raises(ValueError, match="2 prompts but 1 seeds"):
        t2i.generate(PROMPTS, [0], steps=1, guidance_scale=1.0)


def test_clip_tokenizer_encodes_each_vocabulary_word_as_one_token() -> None:
    vocab, merges = clip_bpe()
    tokenizer = CLIPTokenizer(vocab=vocab, merges=merges)
    for word in WORDS + PUNCTUATION:
        assert tokenizer.convert_ids_to_tokens(tokenizer.encode(word, add_special_tokens=False)) == [word + "</w>"]
    assert tokenizer.tokenize("xyz") == ["x", "y", "z</w>"]
    assert clip_bpe() == (vocab, merges)  # deterministic


@pytest.mark.filterwarnings("ignore:`upcast_vae` is deprecated:FutureWarning")  # diffusers' own upcast path
@pytest.mark.parametrize(
    "vae, decoded_in",
    [pytest.param(None, torch.float32, id="own-vae-upcast"), pytest.param("other", torch.float16, id="fp16-safe-vae")],
)
def test_vae_loads_in_the_pipeline_dtype_and_decides_the_upcast(
    tiny_vaes: dict[str, Path], vae: str | None, decoded_in: torch.dtype
) -> None:
    """SDXL in float16 decodes in float32 unless the VAE's config says ``force_upcast: false`` (the fp16-fix VAE)."""
    t2i = DiffusersTextToImage(build_tiny("sdxl"), dtype="float16", vae=None if vae is None else tiny_vaes[vae])
    assert t2i.pipe.vae.dtype == torch.float16 and t2i.pipe.vae.config.force_upcast is (vae is None)
    decode, seen = t2i.pipe.vae.decode, []

    def recording(latents: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        seen.append(latents.dtype)
        return decode(latents, *args, **kwargs)

    t2i.pipe.vae.decode = recording
    [image] = t2i.generate(["a red ball"], [0], steps=1, guidance_scale=1.0)
    assert seen == [decoded_in] and image.size == (64, 64)
    assert t2i.pipe.vae.dtype == torch.float16  # cast back after an upcast decode
