"""AMC on the tiny BLIP ITM twin: the loss against hand-computed values, Grad-CAM against an independent
computation, box masks, hard negatives, and a short run that moves the heat map into the boxes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from transformers import BlipForImageTextRetrieval

from syngen.devtools.shapes import make_shapes_dataset, make_world
from syngen.models.blip_itm import BlipItm
from syngen.models.loading import build_tiny
from syngen.train.amc import (
    AmcModel,
    AmcObjective,
    amc_loss,
    box_masks,
    check_layer,
    collate,
    gradcam,
    hard_negatives,
    in_box_ratio,
    itm_loss,
    match,
    normalise,
    patch_grid,
)
from syngen.train.checkpoint import checkpoints, read_state
from syngen.train.config import AmcConfig
from syngen.train.data import RegionDataset, load_split
from syngen.train.loop import TrainError, train
from tests.helpers import draw_shapes

T = torch.tensor


def _case(heats: list, masks: list) -> tuple[torch.Tensor, torch.Tensor]:
    return T(heats, dtype=torch.float32), T(masks, dtype=torch.float32)


# (heat maps, masks, L_mean, L_max, samples used), worked by hand from
# docs/methods.md#amc-attention-mask-consistency with the default margins.
LOSS_CASES = [
    pytest.param([[[1, 0], [0, 0]]], [[[1, 0], [0, 0]]], 0.0, 0.0, 1, id="heat-in-box"),
    # mean_in 0, mean_out 1/3: 1/3 - 0 + 0.1; max_out 1, max_in 0: 1 - 0 + 0.5
    pytest.param([[[0, 1], [0, 0]]], [[[1, 0], [0, 0]]], 0.1 + 1 / 3, 1.5, 1, id="heat-out-of-box"),
    pytest.param([[[0, 1], [0, 0]]], [[[0, 0], [0, 0]]], 0.0, 0.0, 0, id="empty-mask"),
    # full mask: mean_out and max_out are 0; mean_in 0.15 > 0.1; max_in 0.3: 0 - 0.3 + 0.5
    pytest.param([[[0.2, 0.1], [0, 0.3]]], [[[1, 1], [1, 1]]], 0.0, 0.2, 1, id="full-mask"),
    # two box sizes, sums over the batch: mean_in (0.2 + 1.8) / 4, mean_out (2.2 + 0) / 4 -> 0.55 - 0.5 + 0.1;
    # max terms per sample: 0.9 - 0.2 + 0.5 = 1.2 and max(0, 0 - 1 + 0.5) = 0, mean 0.6
    pytest.param(
        [[[0.2, 0.9], [0.9, 0.4]], [[1, 0.4], [0.4, 0]]],
        [[[1, 0], [0, 0]], [[1, 1], [1, 0]]],
        0.15,
        0.6,
        2,
        id="two-box-sizes",
    ),
    pytest.param(
        [[[0.5, 0.5], [0.5, 0.5]], [[0, 1], [0, 0]]],
        [[[0, 0], [0, 0]], [[1, 0], [0, 0]]],
        0.1 + 1 / 3,
        1.5,
        1,
        id="empty-mask-left-out-of-batch",
    ),
]


@pytest.mark.parametrize("heats, masks, l_mean, l_max, used", LOSS_CASES)
def test_amc_loss_equals_the_formula(heats: list, masks: list, l_mean: float, l_max: float, used: int) -> None:
    heat, mask = _case(heats, masks)
    out = amc_loss(heat, mask)
    assert out.used == used
    assert out.mean.item() == pytest.approx(l_mean, abs=1e-6)
    assert out.max.item() == pytest.approx(l_max, abs=1e-6)
    assert out.loss.item() == pytest.approx(0.2 * l_mean + 0.8 * l_max, abs=1e-6)


def test_amc_loss_margins_and_weights_are_settings() -> None:
    heat, mask = _case([[[0, 1], [0, 0]]], [[[1, 0], [0, 0]]])
    out = amc_loss(heat, mask, mean_margin=0.0, max_margin=0.0, mean_weight=1.0, max_weight=2.0)
    assert out.loss.item() == pytest.approx(1 / 3 + 2 * 1.0)


def test_in_box_ratio() -> None:
    heat, mask = _case([[[1, 3], [0, 0]], [[0, 0], [0, 0]]], [[[1, 0], [0, 0]], [[1, 0], [0, 0]]])
    assert in_box_ratio(heat, mask).tolist() == [0.25, 0.0]


@pytest.mark.parametrize(
    "box, image_size, expected",
    [
        pytest.param([0, 0, 2, 2], (4, 4), [[1, 1, 0, 0], [1, 1, 0, 0], [0] * 4, [0] * 4], id="same-size"),
        # an 8x4 image squeezed to 4x4: x halves, y stays
        pytest.param([4, 2, 8, 4], (8, 4), [[0] * 4, [0] * 4, [0, 0, 1, 1], [0, 0, 1, 1]], id="resized"),
        pytest.param([1.6, 1.6, 2.4, 2.4], (4, 4), [[0] * 4, [0] * 4, [0] * 4, [0] * 4], id="box-between-centres"),
    ],
)
def test_box_masks_cover_pixel_centres(box: list, image_size: tuple, expected: list) -> None:
    assert box_masks([box], [image_size], (4, 4))[0].tolist() == expected


def test_hard_negatives_pick_the_most_similar_allowed() -> None:
    sim = T([[0.9, 0.8, 0.1], [0.7, 0.9, 0.3], [0.2, 0.6, 0.5]])
    allowed = T([[0, 1, 1], [1, 0, 1], [0, 0, 0]], dtype=torch.bool)
    assert hard_negatives(sim, allowed).tolist() == [1, 0, -1]


@pytest.fixture(scope="module")
def itm() -> BlipItm:
    return BlipItm(build_tiny("itm-blip"))


def test_the_default_gradcam_layer_is_a_cross_attention_layer_before_the_last(itm: BlipItm) -> None:
    assert check_layer(itm.model, -4) == 0


@pytest.mark.parametrize("layer", [pytest.param(-1, id="last"), pytest.param(3, id="last-by-index"), 4, -5])
def test_gradcam_layer_must_come_before_the_last(itm: BlipItm, layer: int) -> None:
    with pytest.raises(ValueError, match="gradcam_layer"):
        check_layer(itm.model, layer)


def test_gradcam_equals_an_independent_computation(itm: BlipItm) -> None:
    model, layer = itm.model, 1
    texts = ["a red circle on the left", "dog"]  # different lengths: padding must not count
    inputs = itm.processor(
        images=[draw_shapes(seed=0), draw_shapes(seed=3)], text=texts, padding=True, return_tensors="pt"
    )
    mask = inputs["attention_mask"]
    assert mask[1].sum() < mask.shape[1]

    # independent: a forward hook keeps the layer's attention probabilities; backward gives their gradient
    kept = {}

    def hook(module, args, output):  # noqa: ANN001, ANN202
        output[1].retain_grad()
        kept["attn"] = output[1]

    module = model.text_encoder.encoder.layer[layer].crossattention.self
    handle = module.register_forward_hook(hook)
    try:
        logits = model(**inputs).itm_score
    finally:
        handle.remove()
    model.zero_grad()
    logits[:, 1].sum().backward()
    attn = kept["attn"].detach().numpy()[..., 1:]
    grad = np.maximum(kept["attn"].grad.numpy()[..., 1:], 0)
    expected = []
    for b in range(2):
        n = int(mask[b].sum())  # real tokens come first
        cam = (attn[b, :, :n] * grad[b, :, :n]).mean(axis=(0, 1))
        expected.append(np.maximum(cam, 0).reshape(8, 8))

    embeds = model.vision_model(pixel_values=inputs["pixel_values"]).last_hidden_state
    m = match(model, embeds, inputs["input_ids"], mask, layer)
    raw = gradcam(m, mask, (8, 8))
    np.testing.assert_allclose(raw.detach().numpy(), np.stack(expected), rtol=1e-5, atol=1e-12)
    assert raw.detach().max() > 0

    # normalised as AMC does: (g - min) / (max + 1e-7), per sample (at the grid's own size: no resampling)
    flat = np.stack(expected).reshape(2, -1)
    flat = flat - flat.min(1, keepdims=True)
    flat = flat / (flat.max(1, keepdims=True) + 1e-7)
    np.testing.assert_allclose(normalise(raw, (8, 8)).detach().numpy().reshape(2, -1), flat, rtol=1e-5, atol=1e-6)

    # upsampled to the input size and still differentiable down to the model's weights (create_graph)
    heat = normalise(raw, (64, 64))
    assert heat.shape == (2, 64, 64)
    model.zero_grad()
    heat[:, :32].sum().backward()
    assert model.vision_model.embeddings.patch_embedding.weight.grad.abs().sum() > 0


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), images=4)


def test_training_moves_the_heat_map_into_the_boxes(shapes: Path, tmp_path: Path) -> None:
    """A red square and a blue circle at seeded places; the phrase names one. All 8 regions form every batch, so
    step 1 (logged before the first update) is the step-0 value on the same data as the last steps."""
    config = AmcConfig(
        dataset_name=str(shapes), output_dir=str(tmp_path / "amc"), model_name_or_path="tiny:itm-blip",
        per_device_train_batch_size=8, learning_rate=1e-3, max_steps=25, logging_steps=1, save_steps=0,
    )  # fmt: skip
    out = train(AmcObjective(config))
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [m["step"] for m in logged] == list(range(1, 26))
    assert {"loss", "loss/amc", "loss/itm", "in_box_ratio", "loss/amc_mean", "loss/amc_max"} <= set(logged[0])
    assert all(m["amc_samples"] == 8 for m in logged)  # no map was below min_heat
    first, last = logged[0], logged[-3:]
    amc_end = sum(m["loss/amc"] for m in last) / 3
    ratio_end = sum(m["in_box_ratio"] for m in last) / 3
    print(f"AMC loss {first['loss/amc']:.4f} -> {amc_end:.4f};", end=" ")
    print(f"in-box ratio {first['in_box_ratio']:.4f} -> {ratio_end:.4f}")
    assert amc_end < 0.5 * first["loss/amc"]
    assert ratio_end > first["in_box_ratio"] + 0.2
    trained = BlipForImageTextRetrieval.from_pretrained(out)
    assert type(trained).__name__ == "BlipForImageTextRetrieval"
    assert read_state(out)["objective"] == "amc"


def test_a_last_layer_setting_fails_before_training(shapes: Path, tmp_path: Path) -> None:
    config = AmcConfig(
        dataset_name=str(shapes), output_dir=str(tmp_path / "x"), model_name_or_path="tiny:itm-blip", gradcam_layer=-1
    )
    with pytest.raises(TrainError, match="gradcam_layer -1"):
        train(AmcObjective(config))


def test_resume_from_a_checkpoint_gives_the_same_model(
    shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {
        "dataset_name": str(shapes), "model_name_or_path": "tiny:itm-blip", "per_device_train_batch_size": 3,
        "learning_rate": 1e-3, "max_steps": 3,
    }  # fmt: skip
    first = train(AmcObjective(AmcConfig(output_dir=str(tmp_path / "a"), save_steps=2, **options)))
    assert [p.name for p in checkpoints(first)] == ["checkpoint-2"]
    assert BlipForImageTextRetrieval.from_pretrained(first / "checkpoint-2").config.text_config.num_hidden_layers == 4
    before = load_file(first / "model.safetensors")
    calls = []
    loss = AmcObjective.loss
    monkeypatch.setattr(AmcObjective, "loss", lambda self, model, batch: calls.append(1) or loss(self, model, batch))
    again = train(
        AmcObjective(AmcConfig(output_dir=str(first), resume_from_checkpoint="true", save_steps=2, **options))
    )  # redoes step 3
    assert len(calls) == 1  # only step 3 ran again
    after = load_file(again / "model.safetensors")
    assert before.keys() == after.keys()
    for key in before:
        torch.testing.assert_close(before[key], after[key], msg=key)


def test_pointing_is_evaluated_during_training(shapes: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    modes = []
    loss = AmcObjective.loss
    monkeypatch.setattr(
        AmcObjective, "loss", lambda self, model, batch: modes.append(model.training) or loss(self, model, batch)
    )
    config = AmcConfig(
        dataset_name=str(shapes), output_dir=str(tmp_path / "amc"), model_name_or_path="tiny:itm-blip",
        per_device_train_batch_size=4, learning_rate=1e-3, max_steps=2, eval_fraction=0.25, eval_steps=1,
        save_steps=0, report_to="none",
    )  # fmt: skip
    out = train(AmcObjective(config))
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [m for m in logged if "eval/pointing" in m]
    assert [m["step"] for m in evals] == [1, 2]
    assert all(m["eval/pointing"] in (0.0, 0.5, 1.0) for m in evals)  # one held-out image: 2 regions
    assert modes == [True, True]  # evaluation (in eval mode) hands the model back in training mode
    card = (out / "README.md").read_text()
    assert "type: zero-shot-object-detection" in card and f"value: {evals[-1]['eval/pointing']}" in card


@pytest.fixture(scope="module")
def world_batch(itm: BlipItm, tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    """Three pictures of the shapes world, two phrases each: every region has two or more allowed negatives."""
    data = make_world(tmp_path_factory.mktemp("world"), range(3))
    regions = RegionDataset(load_split(str(data), "grounding", "train"), require=("phrase", "box"))
    return collate(itm.processor, [regions[i] for i in range(len(regions))], 35)


def test_itm_loss_is_cross_entropy_on_positives_and_the_hardest_allowed_negatives(
    itm: BlipItm, world_batch: dict[str, torch.Tensor]
) -> None:
    """Recomputed through BLIP's own forward: similarity from ``use_itm_head=False`` (rows images, columns texts),
    ITM logits from ``use_itm_head=True``; label 1 for each region's own (image, phrase), 0 for each image's most
    similar allowed phrase and each phrase's most similar allowed image."""
    model, b = itm.model.eval(), world_batch
    ids, att, pixels, allowed = b["input_ids"], b["attention_mask"], b["pixel_values"], b["allowed"].numpy()
    embeds = model.vision_model(pixel_values=pixels).last_hidden_state
    got = itm_loss(model, embeds, ids, att, b["allowed"], match(model, embeds, ids, att, 0).logits).item()

    with torch.no_grad():
        sim = model(input_ids=ids, pixel_values=pixels, attention_mask=att, use_itm_head=False).itm_score.numpy()
        n = len(ids)
        pairs = [(i, i, 1) for i in range(n)]
        for i in range(n):
            texts = [j for j in range(n) if allowed[i, j]]
            pairs.append((i, max(texts, key=lambda j: sim[i, j]), 0))
        for j in range(n):
            images = [i for i in range(n) if allowed[i, j]]
            pairs.append((max(images, key=lambda i: sim[i, j]), j, 0))
        image, text, label = (list(column) for column in zip(*pairs, strict=True))
        logits = (
            model(input_ids=ids[text], pixel_values=pixels[image], attention_mask=att[text], use_itm_head=True)
            .itm_score.double()
            .numpy()
        )
    log_softmax = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    expected = -np.mean(log_softmax[np.arange(len(label)), label])
    assert all(allowed.sum(1) >= 2)
    assert got == pytest.approx(expected, rel=1e-4)


def _amc(itm: BlipItm, min_heat: float, **weights: float) -> AmcModel:
    defaults = {"itm_weight": 1.0, "amc_weight": 1.0, "mean_margin": 0.1, "max_margin": 0.5}
    return AmcModel(itm.model.eval(), -4, {**defaults, "mean_weight": 0.2, "max_weight": 0.8, **weights}, min_heat)


def raw_peaks(itm: BlipItm, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Each sample's raw Grad-CAM peak at the default layer (what min_heat is compared with)."""
    model = itm.model.eval()
    embeds = model.vision_model(pixel_values=batch["pixel_values"]).last_hidden_state
    m = match(model, embeds, batch["input_ids"], batch["attention_mask"], check_layer(model, -4))
    return gradcam(m, batch["attention_mask"], patch_grid(embeds), create_graph=False).detach().flatten(1).max(1).values


@pytest.mark.parametrize(
    "threshold", [pytest.param("zero", id="none-left-out"), pytest.param("median", id="some-left-out"),
                  pytest.param("above-all", id="all-left-out")]
)  # fmt: skip
def test_min_heat_leaves_faint_maps_out_of_the_amc_loss(
    itm: BlipItm, world_batch: dict[str, torch.Tensor], threshold: str
) -> None:
    peaks = raw_peaks(itm, world_batch)
    assert len(set(peaks.tolist())) == len(peaks)  # distinct peaks: a threshold between them splits the batch
    value = {"zero": 0.0, "median": float(peaks.median()) * (1 + 1e-6), "above-all": float(peaks.max()) * 2}[threshold]
    loss, logs = _amc(itm, value)(**world_batch)
    kept = int((peaks >= value).sum())
    assert logs["amc_samples"].item() == kept
    assert kept == {"zero": len(peaks), "median": len(peaks) // 2, "above-all": 0}[threshold]
    if kept == 0:
        assert logs["loss/amc"].item() == 0.0


def test_every_logged_amc_term_adds_up_to_the_loss(itm: BlipItm, world_batch: dict[str, torch.Tensor]) -> None:
    """With unequal weights, so that swapped or missing weights show: loss = 0.3 ITM + 2 AMC, AMC = 0.4 mean + 0.6 max,
    and each term as its own function gives it on the same heat maps."""
    model = _amc(itm, 0.0, itm_weight=0.3, amc_weight=2.0, mean_weight=0.4, max_weight=0.6)
    loss, logs = model(**world_batch)
    b = world_batch
    embeds = itm.model.vision_model(pixel_values=b["pixel_values"]).last_hidden_state
    m = match(itm.model, embeds, b["input_ids"], b["attention_mask"], model.layer)
    heat = normalise(gradcam(m, b["attention_mask"], patch_grid(embeds)), tuple(b["pixel_values"].shape[-2:]))
    amc = amc_loss(heat, b["masks"], mean_weight=0.4, max_weight=0.6)
    itm_value = itm_loss(itm.model, embeds, b["input_ids"], b["attention_mask"], b["allowed"], m.logits)
    assert logs["loss/amc_mean"].item() == pytest.approx(amc.mean.item(), rel=1e-5)
    assert logs["loss/amc_max"].item() == pytest.approx(amc.max.item(), rel=1e-5)
    assert logs["loss/amc"].item() == pytest.approx(0.4 * amc.mean.item() + 0.6 * amc.max.item(), rel=1e-5)
    assert logs["loss/itm"].item() == pytest.approx(itm_value.item(), rel=1e-5)
    assert loss.item() == pytest.approx(0.3 * logs["loss/itm"].item() + 2 * logs["loss/amc"].item(), rel=1e-5)
    assert logs["in_box_ratio"].item() == pytest.approx(in_box_ratio(heat.detach(), b["masks"]).mean().item(), rel=1e-5)
