"""SFT: SAM's focal + Dice loss against formulas written out here, the logged terms, which parameters train, and
a run on the shapes world that learns held-out masks well above what a policy without the image could reach."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from syngen.devtools.shapes import SIZE, make_world
from syngen.eval.evaluate import evaluate_ris
from syngen.metrics import intersection_union, ris_metrics
from syngen.train.config import SftConfig
from syngen.train.data import RegionDataset, load_split
from syngen.train.loop import train
from syngen.train.sft import SftObjective, mask_loss, masked_dice, masked_focal
from tests.train.logged import first_step

TINY = {
    "sam_model_name_or_path": "tiny:segmenter",
    "text_encoder_name_or_path": "tiny:text-encoder",
    "prompter_heads": 2,
}


def focal_formula(z: np.ndarray, t: np.ndarray) -> float:
    """Sigmoid focal loss (Lin et al. 2017, α 0.25, γ 2) averaged over pixels, written out."""
    p = 1 / (1 + np.exp(-z))
    per_pixel = np.where(t, -0.25 * (1 - p) ** 2 * np.log(p), -0.75 * p**2 * np.log(1 - p))
    return float(per_pixel.mean())


def dice_formula(z: np.ndarray, t: np.ndarray) -> float:
    """1 − (2 Σ p·t + 1) / (Σ p + Σ t + 1) on probabilities."""
    p = 1 / (1 + np.exp(-z))
    return float(1 - (2 * (p * t).sum() + 1) / (p.sum() + t.sum() + 1))


def _small_object() -> np.ndarray:
    t = np.zeros((6, 6), bool)
    t[2:4, 2:4] = True
    return t


RNG = np.random.default_rng(0)
LOSS_CASES = [
    pytest.param(RNG.normal(0, 3, (6, 6)), RNG.random((6, 6)) > 0.5, id="random"),
    pytest.param(np.full((6, 6), -8.0), _small_object(), id="predicts-nothing-on-a-small-object"),
    pytest.param(np.where(_small_object(), 8.0, -8.0), _small_object(), id="right-on-a-small-object"),
    pytest.param(np.full((6, 6), 8.0), _small_object(), id="predicts-everything"),
]


@pytest.mark.parametrize("logits, target", LOSS_CASES)
def test_focal_and_dice_match_their_formulas(logits: np.ndarray, target: np.ndarray) -> None:
    z, t = torch.tensor(logits[None]), torch.tensor(target[None], dtype=torch.float64)
    valid = torch.ones_like(t, dtype=torch.bool)
    assert masked_focal(z, t, valid).item() == pytest.approx(focal_formula(logits, target), rel=1e-9)
    assert masked_dice(z, t, valid).item() == pytest.approx(dice_formula(logits, target), rel=1e-9)
    total, focal, dice = mask_loss(z, t, valid)
    assert total.item() == pytest.approx(20 * focal.item() + dice.item(), rel=1e-12)


def test_padding_pixels_are_left_out() -> None:
    logits, target = LOSS_CASES[0].values
    valid = np.zeros((6, 6), bool)
    valid[:4, :5] = True
    z, t = torch.tensor(logits[None]), torch.tensor(target[None], dtype=torch.float64)
    v = torch.tensor(valid[None])
    kept_z, kept_t = logits[:4, :5], target[:4, :5]
    assert masked_focal(z, t, v).item() == pytest.approx(focal_formula(kept_z, kept_t), rel=1e-9)
    assert masked_dice(z, t, v).item() == pytest.approx(dice_formula(kept_z, kept_t), rel=1e-9)


def test_an_empty_prediction_costs_the_whole_dice_term() -> None:
    """What BCE alone rewards on small objects: predicting nothing. Dice gives it (close to) its maximum, 1."""
    z, t = (torch.tensor(a[None]) for a in LOSS_CASES[1].values)
    valid = torch.ones_like(t, dtype=torch.bool)
    assert masked_dice(z, t.double(), valid).item() > 0.75


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The world's pictures 0-31 to train on and 1000-1015 held out (two objects each, colour + form phrases)."""
    root = tmp_path_factory.mktemp("world")
    return make_world(root / "train", range(32)), make_world(root / "held-out", range(1000, 1016))


POLICIES = [
    pytest.param(TINY, id="text-promptable-sam"),
    pytest.param({"policy": "sam3", "model_name_or_path": "tiny:sam3"}, id="sam3"),
]


@pytest.fixture(scope="module", params=POLICIES)
def trained(world: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """150 SFT steps of each policy on the world's training pictures (SAM 3's twin: about 45 s on one loaded core)."""
    torch.set_num_threads(1)
    config = SftConfig(
        dataset_name=str(world[0]), output_dir=str(tmp_path_factory.mktemp("sft")), max_steps=150,
        per_device_train_batch_size=8, learning_rate=3e-3, logging_steps=10, save_steps=0, **request.param,
    )  # fmt: skip
    return train(SftObjective(config))


def baseline(data: Path, predict: str) -> float:
    """Held-out mIoU of a mask that needs no policy: the whole picture, or the true box filled."""
    inter, union = [], []
    for item in RegionDataset(load_split(str(data), "grounding", "train")):
        pred = np.ones((SIZE, SIZE), bool)
        if predict == "box":
            x1, y1, x2, y2 = (int(v) for v in item["box"])
            pred = np.zeros((SIZE, SIZE), bool)
            pred[y1:y2, x1:x2] = True
        i, u = intersection_union(pred, item["mask"])
        inter.append(i)
        union.append(u)
    return ris_metrics(inter, union)["mIoU"]


def test_sft_learns_held_out_masks(world: tuple[Path, Path], trained: Path) -> None:
    held_out = evaluate_ris(str(trained), str(world[1]), device="cpu")["metrics"]["train"]
    whole, box = baseline(world[1], "whole"), baseline(world[1], "box")
    print(f"\nheld-out mIoU {held_out['mIoU']:.3f} (whole picture {whole:.3f}, true box as mask {box:.3f})")
    assert held_out["n"] == 32
    assert held_out["mIoU"] >= 0.5
    assert held_out["mIoU"] >= whole + 0.3


def test_sft_lowers_the_dice_term(trained: Path) -> None:
    logged = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    first, last = logged[0]["loss/dice"], logged[-1]["loss/dice"]
    assert last < 0.6 * first, (first, last)


@pytest.mark.parametrize("policy", POLICIES)
def test_every_logged_term_is_its_formula_on_the_step(tmp_path: Path, policy: dict) -> None:
    """Step 1 (one batch of every region, before the update): loss/focal, loss/dice and loss/coarse as the formulas
    give them on the policy's outputs, and the logged loss their weighted sum (coarse_weight 0.5; SAM 3 has no
    coarse mask, so neither the term nor its log)."""
    data = make_world(tmp_path / "data", range(3))
    config = SftConfig(
        dataset_name=str(data), output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=6,
        logging_steps=1, save_steps=0, coarse_weight=0.5, **policy,
    )  # fmt: skip
    logged, objective, model, batch = first_step(SftObjective, config)
    with torch.no_grad():
        masks, coarse = objective.forward(model, batch)  # type: ignore[attr-defined]
    valid = batch["valid"].numpy()

    def mean_of(formula, logits: torch.Tensor) -> float:  # noqa: ANN001
        z, t = logits.double().numpy(), batch["mask"].numpy().astype(bool)
        return float(np.mean([formula(z[b][valid[b]], t[b][valid[b]]) for b in range(len(z))]))

    focal, dice = mean_of(focal_formula, masks), mean_of(dice_formula, masks)
    assert logged["loss/focal"] == pytest.approx(focal, rel=1e-4)
    assert logged["loss/dice"] == pytest.approx(dice, rel=1e-4)
    if coarse is None:
        assert "loss/coarse" not in logged
        assert logged["loss"] == pytest.approx(20 * focal + dice, rel=1e-4)
        return
    coarse_term = 20 * mean_of(focal_formula, coarse) + mean_of(dice_formula, coarse)
    assert logged["loss/coarse"] == pytest.approx(coarse_term, rel=1e-4)
    assert logged["loss"] == pytest.approx(20 * focal + dice + 0.5 * coarse_term, rel=1e-4)


def module_of(parameter: str) -> str:
    """``sam.mask_decoder`` for SAM's parts, else the policy's own top-level module (``layers``, ``word_proj``...)."""
    parts = parameter.split(".")
    return ".".join(parts[:2]) if parts[0] == "sam" else parts[0]


@pytest.mark.parametrize("freeze", [pytest.param(True, id="frozen-encoder"), pytest.param(False, id="trained-encoder")])
def test_freeze_image_encoder_decides_whether_sams_image_encoder_trains(tmp_path: Path, freeze: bool) -> None:
    data = make_world(tmp_path / "data", range(2))
    config = SftConfig(
        dataset_name=str(data), output_dir=str(tmp_path / "out"), max_steps=2, per_device_train_batch_size=4,
        learning_rate=1e-2, save_steps=0, freeze_image_encoder=freeze, **TINY,
    )  # fmt: skip
    objective = SftObjective(config)
    policy = objective.build(torch.device("cpu"))
    trains = {module_of(name) for name, p in policy.named_parameters() if p.requires_grad}
    expected = {"sam.mask_decoder", "sam.prompt_encoder", "word_proj", "sentence_proj", "sparse", "layers"}
    assert trains == expected | {"mask_features"} | (set() if freeze else {"sam.vision_encoder"})
    prompt = {n for n, p in policy.sam.prompt_encoder.named_parameters() if p.requires_grad}
    assert prompt and all(n.startswith("mask_embed.") for n in prompt)  # points and boxes are never given

    after = load_file(train(objective) / "model.safetensors")
    initial = policy.state_dict()  # SAM and CLIP as the twins hold them (train builds its own policy)

    def changed(prefix: str) -> list[str]:
        return [n for n, t in initial.items() if n.startswith(prefix) and not torch.equal(t, after[n])]

    assert bool(changed("sam.vision_encoder.")) is not freeze
    assert not changed("text_encoder.")
    assert changed("sam.mask_decoder.")
