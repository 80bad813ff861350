"""The synthesize stage on the SD twin: fan-out ids, derived seeds, batching, reruns, empty captions."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from PIL import Image
from pydantic import ValidationError

from syngen.errors import PreflightError, RecipeError
from syngen.models.diffusers_t2i import DiffusersTextToImage
from syngen.models.loading import build_tiny
from syngen.recipe import load_recipe
from syngen.runner import Runner
from syngen.sample import Failure, make_id
from syngen.stages.base import Context
from syngen.stages.synthesize import Synthesize, SynthesizeConfig

SAMPLES = [{"id": "p0", "caption": "a red ball on the table"}, {"id": "p1", "caption": "a dog on the grass"}]


@pytest.fixture(scope="module")
def sd() -> DiffusersTextToImage:
    return DiffusersTextToImage(build_tiny("sd"))


def run(sd: Any, samples: list[dict], **config: Any) -> tuple[list, list[int]]:
    """The stage's results and the number of prompts in each generate call."""
    stage = Synthesize(SynthesizeConfig(**({"steps": 1} | config)), Context(recipe_dir=Path(".")))
    calls: list[int] = []

    def generate(prompts: list[str], seeds: list[int], **kwargs: Any) -> list[Image.Image]:
        calls.append(len(prompts))
        return sd.generate(prompts, seeds, **kwargs)

    recording = type("Recording", (), {"generate": staticmethod(generate)})()
    return stage.outcomes(samples, recording), calls


def test_fan_out_with_derived_ids_and_seeds(sd: DiffusersTextToImage) -> None:
    results, calls = run(sd, SAMPLES, images_per_caption=2, batch_size=3, seed=7, height=48, width=72)
    assert calls == [2, 2]
    for sample, updates in zip(SAMPLES, results, strict=True):
        assert [u["synth"]["index"] for u in updates] == [0, 1]
        for i, update in enumerate(updates):
            assert update["id"] == make_id(sample["id"], "synthesize", i, 7)
            assert update["synth"] == {
                "seed": int(make_id(7, sample["id"], i), 16) % 2**31,
                "index": i,
                "parent": sample["id"],
                "prompt": sample["caption"],
            }
            image = Image.open(io.BytesIO(update["image"]))
            assert image.format == "PNG" and image.size == (72, 48) == (update["width"], update["height"])
    assert len({u["id"] for updates in results for u in updates}) == 4


def test_rerun_gives_identical_images_and_another_seed_different_ones(sd: DiffusersTextToImage) -> None:
    first, _ = run(sd, SAMPLES)
    again, _ = run(sd, SAMPLES)
    other, _ = run(sd, SAMPLES, seed=1)
    assert [u[0]["image"] for u in first] == [u[0]["image"] for u in again]
    assert first[0][0]["image"] != other[0][0]["image"] and first[0][0]["id"] != other[0][0]["id"]
    assert (first[0][0]["width"], first[0][0]["height"]) == (64, 64)  # the twin's own size by default


def test_empty_caption_is_a_failure(sd: DiffusersTextToImage) -> None:
    results, calls = run(sd, [{"id": "e", "caption": "  "}, SAMPLES[0]])
    assert isinstance(results[0], Failure) and results[0].kind == "empty_caption"
    assert len(results[1]) == 1 and calls == [1]


@pytest.mark.parametrize("field", ["height", "width"], ids=["height", "width"])
def test_sizes_must_be_multiples_of_8(field: str) -> None:
    with pytest.raises(ValidationError, match="multiple of 8"):
        SynthesizeConfig(**{field: 100})


class OomAbove:
    """A text-to-image model that runs out of CUDA memory on calls of more than ``limit`` images."""

    def __init__(self, limit: int):
        self.limit, self.calls = limit, []

    def generate(self, prompts: list[str], seeds: list[int], **kwargs: Any) -> list[Image.Image]:
        self.calls.append(len(prompts))
        if len(prompts) > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 4.00 GiB")
        return [Image.new("RGB", (8, 8), (seed % 256, 0, 0)) for seed in seeds]

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    "limit, calls_after",
    [pytest.param(1, [1] * 8, id="down-to-one-image"), pytest.param(2, [2] * 4, id="down-to-two-images")],
)
def test_out_of_memory_shrinks_the_model_call_with_several_images_per_caption(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, limit: int, calls_after: list[int]
) -> None:
    """One caption per batch (images_per_caption 4, batch_size 4): halving the batch alone cannot help."""
    model = OomAbove(limit)
    monkeypatch.setattr("syngen.models.pool.load", lambda *args, **options: (model, 0.0))
    (tmp_path / "captions.txt").write_text("a red ball\na dog\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "oom",
                "source": {"kind": "captions", "path": "captions.txt"},
                "runtime": {"device": "cpu"},
                "stages": {"synthesize": {"model": "org/sd", "images_per_caption": 4, "batch_size": 4, "steps": 1}},
            }
        )
    )
    runner = Runner(load_recipe(recipe), tmp_path / "out", progress=False)
    runner.open_stores()
    samples = list(runner.samples())
    report = runner.summary["stages"]["synthesize"]
    assert (report["items_in"], report["failed"], report["emitted"]) == (2, 0, 8)
    assert sorted(s["synth"]["seed"] % 256 for s in samples) == sorted(
        runner.stages[1].image_seed(p, i) % 256 for p in {s["synth"]["parent"] for s in samples} for i in range(4)
    )
    assert [n for n in model.calls if n <= limit] == calls_after  # every image made once, in calls that fit


PRE_SETTINGS = {"model", "steps", "guidance_scale", "height", "width", "images_per_caption", "negative_prompt", "seed"}


@pytest.mark.parametrize(
    "settings, same_fingerprint",
    [
        pytest.param({}, True, id="defaults"),
        pytest.param({"cpu_offload": True, "vae_slicing": True}, True, id="memory-savers-change-nothing-made"),
        pytest.param({"png_compress_level": 1}, True, id="png-level-same-pixels"),
        pytest.param({"scheduler": "EulerDiscreteScheduler"}, False, id="scheduler"),
        pytest.param({"variant": "fp16"}, False, id="variant"),
        pytest.param({"vae_tiling": True}, False, id="vae-tiling"),
        pytest.param({"vae": "madebyollin/sdxl-vae-fp16-fix"}, False, id="vae"),
    ],
)
def test_diffusers_settings_leave_the_fingerprint_alone_at_defaults(settings: dict, same_fingerprint: bool) -> None:
    ctx = Context(recipe_dir=Path("."))
    default = Synthesize(SynthesizeConfig(), ctx).fingerprint()
    assert set(default["config"]) == PRE_SETTINGS  # what stores made before these settings existed hold
    assert (Synthesize(SynthesizeConfig(**settings), ctx).fingerprint() == default) is same_fingerprint


def test_vae_and_its_revision_are_in_the_fingerprint() -> None:
    ctx = Context(recipe_dir=Path("."))

    def fingerprint(revision: str | None) -> dict:
        return Synthesize(SynthesizeConfig(vae={"id": "org/vae", "revision": revision}), ctx).fingerprint()

    assert fingerprint(None)["config"]["vae"]["id"] == "org/vae"
    assert fingerprint("v1") != fingerprint("v2")


def test_unknown_scheduler_fails_validation() -> None:
    with pytest.raises(ValidationError, match="not a diffusers scheduler"):
        SynthesizeConfig(scheduler="FastestScheduler")


def test_diffusers_options_reach_the_pipeline() -> None:
    plain = DiffusersTextToImage(build_tiny("sd"))
    tuned = DiffusersTextToImage(
        build_tiny("sd"), scheduler="EulerDiscreteScheduler", vae_slicing=True, vae_tiling=True, cpu_offload=True
    )
    assert type(tuned.pipe.scheduler).__name__ == "EulerDiscreteScheduler"
    assert tuned.pipe.vae.use_slicing and tuned.pipe.vae.use_tiling
    assert type(plain.pipe.scheduler).__name__ == "PNDMScheduler" and not plain.pipe.vae.use_slicing
    images = tuned.generate(["a red ball"] * 2, [1, 2], steps=2, guidance_scale=7.5)
    assert [im.size for im in images] == [(64, 64)] * 2  # cpu_offload is ignored on CPU


@pytest.mark.parametrize(
    ("captions", "batch_size", "calls"),
    [(4, 3, [2, 2]), (7, 3, [2, 2, 3]), (6, 3, [3, 3]), (1, 4, [1]), (5, 8, [5])],
    ids=["no-lone-last-image", "near-equal", "even", "one", "one-call"],
)
def test_calls_are_as_few_as_batch_size_allows_and_near_equal(captions: int, batch_size: int, calls: list[int]) -> None:
    blank = type("Blank", (), {"generate": lambda self, prompts, seeds, **kw: [Image.new("RGB", (8, 8))] * len(seeds)})
    samples = [{"id": f"p{i}", "caption": f"a red ball number {i}"} for i in range(captions)]
    results, made = run(blank(), samples, batch_size=batch_size)
    assert made == calls and sum(map(len, results)) == captions


def test_batch_grouping_changes_pixels_by_at_most_one_level(sd: DiffusersTextToImage) -> None:
    """The documented behaviour (docs/limits.md): ids, seeds and metadata never depend on the grouping; pixels
    may differ by one level in a few values between calls of different sizes; the same grouping is bit-identical."""
    samples = SAMPLES + [{"id": "p2", "caption": "two cats under a tree"}]

    def made(batch_size: int) -> list[dict]:
        results, _ = run(sd, samples, batch_size=batch_size, height=32, width=32)
        return [update for updates in results for update in updates]

    alone, grouped = made(1), made(3)
    assert [u["image"] for u in grouped] == [u["image"] for u in made(3)]
    for one, other in zip(alone, grouped, strict=True):
        assert {k: v for k, v in one.items() if k != "image"} == {k: v for k, v in other.items() if k != "image"}
        a, b = (np.asarray(Image.open(io.BytesIO(u["image"])), dtype=int) for u in (one, other))
        assert np.abs(a - b).max() <= 1 and (a != b).mean() < 0.01


def synthesized(tmp_path: Path, **settings: Any) -> dict[str, bytes]:
    """A run of the captions source and the synthesize stage (SD twin) with ``settings``: PNG bytes by sample id."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "captions.txt").write_text("a red ball\na dog on the grass\n")
    recipe = tmp_path / "r.yaml"
    synthesize = {"model": "tiny:sd", "steps": 1, "height": 32, "width": 32} | settings
    recipe.write_text(
        yaml.safe_dump(
            {
                "name": "vae",
                "source": {"kind": "captions", "path": "captions.txt"},
                "runtime": {"device": "cpu"},
                "stages": {"synthesize": synthesize},
            }
        )
    )
    runner = Runner(load_recipe(recipe), tmp_path / "out", progress=False)
    runner.preflight()
    runner.open_stores()
    return {s["id"]: s["image"] for s in runner.samples()}


@pytest.mark.parametrize(
    "vae, same_images",
    [pytest.param("own", True, id="the-checkpoints-own-vae"), pytest.param("other", False, id="another-vae")],
)
def test_vae_replaces_the_checkpoints(tmp_path: Path, tiny_vaes: dict[str, Path], vae: str, same_images: bool) -> None:
    default = synthesized(tmp_path / "default")
    replaced = synthesized(tmp_path / vae, vae=str(tiny_vaes[vae]))
    assert replaced.keys() == default.keys() and len(default) == 2
    assert all((replaced[i] == default[i]) is same_images for i in default)


@pytest.mark.parametrize("field", ["model", "vae"], ids=["model", "vae"])
def test_missing_model_or_vae_fails_in_preflight_naming_stage_and_field(tmp_path: Path, field: str) -> None:
    with pytest.raises(PreflightError, match=rf"^stages\.synthesize\.{field}: model 'some-org/not-cached' is not "):
        synthesized(tmp_path, **{field: {"id": "some-org/not-cached", "revision": "v2"}})
    assert not list((tmp_path / "out").glob("stages/*/part-*.parquet"))


@pytest.mark.parametrize(
    "vae, error",
    [
        pytest.param("tiny:sd", "stages.synthesize.vae: a VAE's Hub id or local folder", id="tiny-twin"),
        pytest.param("", "stages.synthesize.vae.id: a model id, local path or tiny:<name> (got '')", id="empty"),
        pytest.param("no such//vae", "stages.synthesize.vae: 'no such//vae' is neither a Hub id", id="not-a-hub-id"),
        pytest.param({"id": "org/vae", "subfolder": "vae"}, "stages.synthesize.vae.subfolder: unknown", id="unknown"),
        pytest.param(["org/vae"], "stages.synthesize.vae: Input should be", id="a-list"),
    ],
)
def test_recipe_validates_the_vae(tmp_path: Path, vae: Any, error: str) -> None:
    recipe = tmp_path / "r.yaml"
    stages = {"synthesize": {"vae": vae}}
    recipe.write_text(yaml.safe_dump({"name": "r", "source": {"kind": "captions", "path": "r.yaml"}, "stages": stages}))
    with pytest.raises(RecipeError, match=re.escape(f"{recipe}: {error}")):
        load_recipe(recipe)


def test_vae_reference_is_loaded_like_a_model(tmp_path: Path, tiny_vaes: dict[str, Path]) -> None:
    ctx = Context(recipe_dir=tmp_path)
    pinned = SynthesizeConfig.model_validate({"vae": {"id": "org/vae", "revision": "v1"}})
    assert (pinned.vae.id, pinned.vae.revision) == ("org/vae", "v1")  # type: ignore[union-attr]
    assert Synthesize(SynthesizeConfig(), ctx).model_options()["vae"] is None
    assert Synthesize(SynthesizeConfig(vae=str(tiny_vaes["own"])), ctx).model_options()["vae"] == tiny_vaes["own"]


@pytest.mark.parametrize("level", [pytest.param(1, id="fastest"), pytest.param(9, id="smallest")])
def test_png_compress_level_keeps_the_pixels_and_the_default_bytes(sd: DiffusersTextToImage, level: int) -> None:
    default, _ = run(sd, SAMPLES)
    chosen, _ = run(sd, SAMPLES, png_compress_level=level)
    for made, other in zip(default, chosen, strict=True):
        image = Image.open(io.BytesIO(made[0]["image"]))
        plain = io.BytesIO()
        image.save(plain, format="PNG")  # PIL's default level: the bytes syngen always wrote
        assert made[0]["image"] == plain.getvalue()
        assert other[0]["image"] != made[0]["image"]
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(other[0]["image"]))), np.asarray(image))
