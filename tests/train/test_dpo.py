"""Mask DPO: the loss equals docs/methods.md#mask-dpo for each variant, log-likelihoods, and a CPU run that learns
the pairs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from syngen.devtools.shapes import make_world
from syngen.train.config import DpoConfig, SftConfig
from syngen.train.data import PairDataset, load_split
from syngen.train.dpo import DpoObjective, dpo_loss, mask_logps
from syngen.train.evaluation import holdout, ris_scores
from syngen.train.loop import train
from syngen.train.policy import TextPromptableSam
from syngen.train.sft import SftObjective
from tests.train.logged import first_step

TINY = {
    "sam_model_name_or_path": "tiny:segmenter",
    "text_encoder_name_or_path": "tiny:text-encoder",
    "prompter_heads": 2,
}

# (log π(m+), log π(m-), log π_ref(m+), log π_ref(m-)) per pair
LOGPS = [(-0.20, -0.90, -0.50, -0.60), (-0.70, -0.30, -0.40, -0.50), (-0.35, -0.35, -0.35, -0.35)]


def formula(loss_type: str, beta: float, pc: float, pr: float, rc: float, rr: float, smoothing: float = 0.0) -> float:
    """docs/methods.md#mask-dpo, written out per pair with math (independent of torch); ``smoothing`` is cDPO's ε:
    −(1 − ε) log σ(βh) − ε log σ(−βh)."""
    h = (pc - rc) - (pr - rr)
    if loss_type == "sigmoid":
        sigma = 1 / (1 + math.exp(-beta * h))
        return -(1 - smoothing) * math.log(sigma) - smoothing * math.log(1 - sigma)
    if loss_type == "ipo":
        return (h - 1 / (2 * beta)) ** 2
    return max(0.0, 1 - beta * h)


@pytest.mark.parametrize(
    "loss_type, beta, smoothing",
    [
        pytest.param("sigmoid", 0.1, 0.0, id="sigmoid-beta0.1"),
        pytest.param("sigmoid", 2.0, 0.0, id="sigmoid-beta2"),
        pytest.param("sigmoid", 2.0, 0.2, id="cdpo-beta2-smoothing0.2"),
        pytest.param("sigmoid", 0.1, 0.45, id="cdpo-beta0.1-smoothing0.45"),
        pytest.param("ipo", 0.1, 0.0, id="ipo-beta0.1"),
        pytest.param("ipo", 0.5, 0.0, id="ipo-beta0.5"),
        pytest.param("hinge", 0.1, 0.0, id="hinge-beta0.1"),
        pytest.param("hinge", 5.0, 0.0, id="hinge-beta5-some-pairs-past-the-margin"),
    ],
)
def test_dpo_loss_matches_the_formula(loss_type: str, beta: float, smoothing: float) -> None:
    pc, pr, rc, rr = (torch.tensor(column, dtype=torch.float64) for column in zip(*LOGPS, strict=True))
    losses, chosen, rejected = dpo_loss(pc, pr, rc, rr, beta, loss_type, smoothing)
    expected = [formula(loss_type, beta, *pair, smoothing) for pair in LOGPS]
    assert losses.tolist() == pytest.approx(expected, rel=1e-12)
    assert chosen.tolist() == pytest.approx([beta * (a - c) for a, _, c, _ in LOGPS])
    assert rejected.tolist() == pytest.approx([beta * (b - d) for _, b, _, d in LOGPS])


def test_mask_log_likelihood_is_the_mean_bernoulli_log_probability_over_valid_pixels() -> None:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (2, 5, 5))
    target = rng.random((2, 5, 5)) > 0.5
    valid = np.zeros((2, 5, 5), bool)
    valid[0, :4, :3] = True  # the rest is SAM's padding
    valid[1] = True
    got = mask_logps(*(torch.tensor(a, dtype=torch.float64) for a in (logits, target, valid)))
    for b in range(2):
        p = 1 / (1 + np.exp(-logits[b][valid[b]]))
        t = target[b][valid[b]]
        assert got[b].item() == pytest.approx(np.mean(np.where(t, np.log(p), np.log(1 - p))), rel=1e-10)


@pytest.fixture(scope="module")
def sft_policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """The shapes world (objects at random places) with rejected masks dilated, eroded and shifted in any of eight
    directions, and an sft checkpoint trained on it: a policy blind to the image cannot rank such pairs."""
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("dpo")
    data = make_world(root / "data", range(16), kinds=("dilated", "eroded", "shifted"))
    config = SftConfig(
        dataset_name=str(data), output_dir=str(root / "sft"), max_steps=40, per_device_train_batch_size=8,
        learning_rate=3e-3, save_steps=0, **TINY,
    )  # fmt: skip
    return data, train(SftObjective(config))


def test_the_pairs_have_several_kinds_and_directions(sft_policy: tuple[Path, Path]) -> None:
    pairs = PairDataset(load_split(str(sft_policy[0]), "preference", "train"))
    moves = set()
    for item in (pairs[i] for i in range(len(pairs))):
        chosen, rejected = item["chosen"], item["rejected"]
        if chosen.sum() == rejected.sum():  # shifted: same area, moved
            (cy, cx), (ry, rx) = np.argwhere(chosen).mean(0), np.argwhere(rejected).mean(0)
            moves.add((int(np.sign(round(ry - cy))), int(np.sign(round(rx - cx)))))
    assert len(moves) >= 6, moves
    assert {"dilated", "eroded", "shifted"} <= set(load_split(str(sft_policy[0]), "preference", "train")["kind"])


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"sft_weight": 0.0}, id="sigmoid-reference-model"),
        pytest.param({"precompute_ref_log_probs": True, "loss_type": "ipo", "sft_weight": 0.0}, id="ipo-precomputed"),
        pytest.param({}, id="defaults-with-the-supervised-term"),
    ],
)
def test_dpo_raises_rewards_accuracy_and_margin(sft_policy: tuple[Path, Path], tmp_path: Path, options: dict) -> None:
    data, init = sft_policy
    config = DpoConfig(
        dataset_name=str(data), output_dir=str(tmp_path / "dpo"), model_name_or_path=str(init), max_steps=16,
        per_device_train_batch_size=16, learning_rate=3e-3, beta=0.5, logging_steps=1, save_steps=0, **options,
    )  # fmt: skip
    out = train(DpoObjective(config))
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    first, last = logged[0], logged[-4:]
    # step 0: the policy is the reference, so every reward is 0 (up to float noise)
    assert [first[k] for k in ("rewards/chosen", "rewards/rejected", "rewards/margins")] == pytest.approx(
        [0, 0, 0], abs=1e-6
    )
    accuracy = sum(m["rewards/accuracies"] for m in last) / len(last)
    margin = sum(m["rewards/margins"] for m in last) / len(last)
    print(f"\nreward accuracy {first['rewards/accuracies']:.2f} -> {accuracy:.2f}, margin -> {margin:.4f}")
    assert margin > first["rewards/margins"] + 1e-3
    assert accuracy >= 0.8


@pytest.mark.parametrize(
    "start", [pytest.param("sft", id="text-promptable-sam-from-sft"), pytest.param("tiny:sam3", id="sam3-from-sam3")]
)
def test_every_logged_term_is_its_formula_on_the_step(
    sft_policy: tuple[Path, Path], tmp_path: Path, start: str
) -> None:
    """Step 1 (one batch of every pair, before the update; the reference is the policy): loss/dpo is −log σ(0) = ln 2,
    loss/sft is SAM's focal + Dice on the chosen masks, the loss their sum with sft_weight 0.7, logps as §3 (for
    SAM 3, on its semantic map: tests/train/test_sam3_policy.py checks that map against SAM 3's own forward)."""
    data, init = sft_policy
    policy = {"model_name_or_path": str(init)} if start == "sft" else {"model_name_or_path": start, "policy": "sam3"}
    config = DpoConfig(
        dataset_name=str(data), output_dir=str(tmp_path / "dpo"), max_steps=1, per_device_train_batch_size=96,
        logging_steps=1, save_steps=0, sft_weight=0.7, **policy,
    )  # fmt: skip
    logged, objective, model, batch = first_step(DpoObjective, config)
    with torch.no_grad():
        masks, _ = objective.forward(model, batch)  # type: ignore[attr-defined]
    z, valid = masks.double().numpy(), batch["valid"].numpy()
    p = 1 / (1 + np.exp(-z))

    def per_pair(name: str, formula) -> float:  # noqa: ANN001
        t = batch[name].numpy().astype(bool)
        return float(np.mean([formula(p[b][valid[b]], t[b][valid[b]]) for b in range(len(z))]))

    def focal(q: np.ndarray, t: np.ndarray) -> float:
        return float(np.where(t, -0.25 * (1 - q) ** 2 * np.log(q), -0.75 * q**2 * np.log(1 - q)).mean())

    def dice(q: np.ndarray, t: np.ndarray) -> float:
        return float(1 - (2 * (q * t).sum() + 1) / (q.sum() + t.sum() + 1))

    def logp(q: np.ndarray, t: np.ndarray) -> float:
        return float(np.where(t, np.log(q), np.log(1 - q)).mean())

    supervised = 20 * per_pair("chosen", focal) + per_pair("chosen", dice)
    assert logged["loss/dpo"] == pytest.approx(math.log(2), rel=1e-5)
    assert logged["loss/sft"] == pytest.approx(supervised, rel=1e-4)
    assert logged["loss"] == pytest.approx(math.log(2) + 0.7 * supervised, rel=1e-4)
    assert logged["logps/chosen"] == pytest.approx(per_pair("chosen", logp), rel=1e-4)
    assert logged["logps/rejected"] == pytest.approx(per_pair("rejected", logp), rel=1e-4)


def test_dpo_evaluates_against_the_chosen_masks_of_held_out_pairs(
    sft_policy: tuple[Path, Path], tmp_path: Path
) -> None:
    data, init = sft_policy
    config = DpoConfig(
        dataset_name=str(data), output_dir=str(tmp_path / "dpo"), model_name_or_path=str(init), max_steps=2,
        per_device_train_batch_size=4, learning_rate=1e-3, eval_fraction=0.25, save_steps=0, report_to="none",
    )  # fmt: skip
    out = train(DpoObjective(config))
    logged = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    final = [m for m in logged if "eval/mIoU" in m][-1]
    # the same scores, recomputed from the saved policy on the same held-out pairs' chosen masks
    policy = TextPromptableSam.load(str(out)).eval()
    _, held_out = holdout(DpoObjective(config).dataset(), 0.25, seed=0)
    embed = lambda items: policy.encode_images([item["image"] for item in items])  # noqa: E731
    expected = ris_scores(policy, held_out, embed, "chosen")
    assert final["eval/mIoU"] == pytest.approx(expected["eval/mIoU"], abs=1e-9)
    assert final["eval/oIoU"] == pytest.approx(expected["eval/oIoU"], abs=1e-9)
