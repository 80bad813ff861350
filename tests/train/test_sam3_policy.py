"""SAM 3 as a trainer policy (``policy: sam3``) on the tiny:sam3 twin: its mask is SAM 3's own semantic map, the DPO
log-likelihood is taken on that map, a killed run resumes to the same weights, the registry loads either policy's
checkpoint, and `eval ris` scores it. (Image and phrase dependence: tests/train/test_policy.py; the loss terms
against formulas: tests/train/test_sft.py and test_dpo.py, each for both policies.)"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from syngen.devtools.shapes import make_shapes_dataset, make_world
from syngen.errors import ConfigError
from syngen.eval.evaluate import evaluate_ris
from syngen.metrics import intersection_union, ris_metrics
from syngen.models.loading import build_tiny
from syngen.models.sam3 import Sam3
from syngen.train.config import DpoConfig, SftConfig
from syngen.train.data import PairDataset, RegionDataset, load_split
from syngen.train.dpo import DpoObjective, pair_logps
from syngen.train.loop import train
from syngen.train.policies import load_policy, saved_policy, start_policy
from syngen.train.policy import TextPromptableSam
from syngen.train.sam3_policy import Sam3Policy
from syngen.train.sft import SftObjective
from tests.train.test_cli import invoke
from tests.train.test_loop import Interrupt, assert_same_weights, dies_at_call, metrics
from tests.train.test_policy import picture

SAM3 = {"policy": "sam3", "model_name_or_path": "tiny:sam3"}


@pytest.fixture(scope="module")
def policy() -> Sam3Policy:
    torch.set_num_threads(1)
    return Sam3Policy.from_base("tiny:sam3").eval()


@pytest.fixture(scope="module")
def pairs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_world(tmp_path_factory.mktemp("pairs"), range(3), kinds=("dilated", "shifted"))


def test_the_policys_mask_is_sam3s_own_semantic_map(policy: Sam3Policy) -> None:
    """The policy's forward (cached FPN levels, no DETR decoder) against ``Sam3Model.forward`` on pixels prepared
    by the sam3 backend's own preprocessing."""
    images = [picture(0), picture(1), picture(1)]
    backend = Sam3(build_tiny("sam3"))
    pixels = torch.cat([backend._pixels(image) for image in images])
    tokens = policy.tokenize(["red square", "red square", "blue circle"])
    with torch.no_grad():
        expected = policy.sam(pixel_values=pixels, **tokens).semantic_seg[:, 0]
        got, coarse = policy(policy.encode_images(images), tokens["input_ids"], tokens["attention_mask"])
    assert coarse is None
    assert got.shape == (3, policy.mask_size, policy.mask_size) == (3, 64, 64)
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)


def test_dpo_log_likelihood_is_the_mean_bernoulli_log_likelihood_of_the_semantic_map(
    policy: Sam3Policy, pairs: Path, tmp_path: Path
) -> None:
    """log π(m) = mean over the S×S map of m log σ(z) + (1 − m) log(1 − σ(z)), z = ``Sam3Model(...).semantic_seg``
    (the full model on the backend's pixels), m the mask resized to the map; for chosen and rejected masks."""
    config = DpoConfig(dataset_name=str(pairs), output_dir=str(tmp_path), **SAM3)
    objective = DpoObjective(config)
    objective.policy = policy
    dataset = PairDataset(load_split(str(pairs), "preference", "train"))
    items = [dataset[i] for i in range(len(dataset))]
    batch = objective.collate(items)
    with torch.no_grad():
        masks, _ = objective.forward(policy, batch)
        chosen, rejected = pair_logps(masks, batch)
        backend = Sam3(build_tiny("sam3"))
        pixels = torch.cat([backend._pixels(item["image"]) for item in items])
        tokens = policy.tokenize([item["phrase"] for item in items])
        z = policy.sam(pixel_values=pixels, **tokens).semantic_seg[:, 0].double().numpy()
    assert batch["valid"].all()  # SAM 3 has no padding: every pixel of the map counts
    for name, got in (("chosen", chosen), ("rejected", rejected)):
        m = batch[name].numpy()
        expected = np.mean(m * -np.logaddexp(0, -z) + (1 - m) * -np.logaddexp(0, z), axis=(1, 2))
        np.testing.assert_allclose(got.numpy(), expected, rtol=1e-4)
    assert not torch.allclose(chosen, rejected)


def test_trains_everything_the_semantic_map_reads_and_nothing_else(policy: Sam3Policy) -> None:
    trains = {name.split(".")[1] for name, p in policy.named_parameters() if p.requires_grad}
    assert trains == {"text_projection", "detr_encoder", "mask_decoder"}
    decoder = {
        name.split(".")[1] for name, p in policy.sam.mask_decoder.named_parameters(prefix="m") if p.requires_grad
    }
    assert decoder == {"pixel_decoder", "semantic_projection", "prompt_cross_attn", "prompt_cross_attn_norm"}
    assert any(p.requires_grad for p in Sam3Policy(policy.sam.config.to_dict(), True).sam.text_encoder.parameters())


def test_a_sam3_run_killed_after_a_checkpoint_resumes_to_the_same_weights(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One thread, CPU: torch.equal on every weight of the final models."""
    torch.set_num_threads(1)
    data = make_shapes_dataset(tmp_path / "shapes", images=4)

    def config(out: str, **options: object) -> SftConfig:
        return SftConfig(
            dataset_name=str(data), output_dir=str(tmp_path / out), max_steps=5, save_steps=2, save_total_limit=1,
            per_device_train_batch_size=3, learning_rate=1e-3, lr_scheduler_type="linear", logging_steps=1,
            **SAM3, **options,
        )  # fmt: skip

    whole = train(SftObjective(config("whole")))
    with monkeypatch.context() as patch:
        dies_at_call(patch, SftObjective, 4)
        with pytest.raises(Interrupt):
            train(SftObjective(config("cut")))
    resumed = train(SftObjective(config("cut", resume_from_checkpoint="true")))
    assert_same_weights(whole, resumed)
    assert [m["step"] for m in metrics(resumed)] == [1, 2, 3, 4, 5]
    assert "loss/coarse" not in metrics(resumed)[0]  # SAM 3 has no coarse mask
    assert saved_policy(str(resumed)) is Sam3Policy


@pytest.fixture(scope="module")
def sft_sam3(pairs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("sft-sam3")
    config = SftConfig(
        dataset_name=str(pairs), output_dir=str(out), max_steps=3, save_steps=0, learning_rate=1e-3, **SAM3
    )
    return train(SftObjective(config))


def test_dpo_from_a_sam3_sft_checkpoint_keeps_the_policy_and_the_registry_loads_it(
    sft_sam3: Path, pairs: Path, tmp_path: Path
) -> None:
    """DPO started from the sam3 sft output, with the default ``policy`` option: the saved policy is loaded as what
    it is; its output is a SAM 3 policy again."""
    config = DpoConfig(
        dataset_name=str(pairs), output_dir=str(tmp_path / "dpo"), model_name_or_path=str(sft_sam3), max_steps=2,
        save_steps=0, learning_rate=1e-3, logging_steps=1,
    )  # fmt: skip
    out = train(DpoObjective(config))
    assert config.policy == "text-promptable-sam"
    assert isinstance(load_policy(str(out)), Sam3Policy)
    card = (out / "README.md").read_text()
    assert str(sft_sam3) in card and "tiny:sam3" in card and "- sam3" in card
    logged = metrics(out)
    assert logged[0]["rewards/margins"] == pytest.approx(0, abs=1e-6)


@pytest.mark.parametrize(
    "name, path, expected",
    [
        pytest.param("sam3", "tiny:sam3", Sam3Policy, id="sam3-from-a-sam3-checkpoint"),
        pytest.param("text-promptable-sam", "sft", Sam3Policy, id="saved-sam3-policy-whatever-the-option"),
        pytest.param("text-promptable-sam", "tiny:sam3", ConfigError, id="text-promptable-from-sam3-refused"),
    ],
)
def test_start_policy_loads_a_saved_policy_as_it_is_and_builds_a_new_one_by_name(
    sft_sam3: Path, name: str, path: str, expected: type
) -> None:
    path = str(sft_sam3) if path == "sft" else path
    if expected is ConfigError:
        with pytest.raises(ConfigError, match="not a syngen policy checkpoint"):
            start_policy(name, path)
    else:
        assert type(start_policy(name, path)) is expected


def test_sft_with_policy_sam3_needs_its_checkpoint() -> None:
    with pytest.raises(ConfigError, match="policy sam3 starts from a SAM 3 checkpoint"):
        SftConfig(dataset_name="d", output_dir="o", policy="sam3")
    with pytest.raises(ConfigError, match="policy: expected one of text-promptable-sam, sam3"):
        SftConfig(dataset_name="d", output_dir="o", policy="sam4")


def test_eval_ris_scores_a_sam3_checkpoint_as_its_semantic_map_says(sft_sam3: Path, pairs: Path) -> None:
    report = evaluate_ris(str(sft_sam3), str(pairs), device="cpu")
    policy = load_policy(str(sft_sam3)).eval()
    assert isinstance(policy, Sam3Policy) and not isinstance(policy, TextPromptableSam)
    regions = RegionDataset(load_split(str(pairs), "grounding", "train"))
    inter, union = [], []
    with torch.no_grad():
        for item in (regions[i] for i in range(len(regions))):
            tokens = policy.tokenize([item["phrase"]])
            logits, _ = policy(policy.encode_images([item["image"]]), tokens["input_ids"], tokens["attention_mask"])
            (pred,) = policy.image_masks(logits, [(item["image"].height, item["image"].width)])
            i, u = intersection_union(pred, item["mask"])
            inter.append(i)
            union.append(u)
    expected = ris_metrics(inter, union)
    got = report["metrics"]["train"]
    assert got["n"] == len(regions) == 6
    assert got["mIoU"] == pytest.approx(expected["mIoU"], abs=1e-9)
    assert got["oIoU"] == pytest.approx(expected["oIoU"], abs=1e-9)


def test_sft_then_dpo_then_eval_ris_with_policy_sam3_from_the_command_line(pairs: Path, tmp_path: Path) -> None:
    sft, dpo = str(tmp_path / "sft"), str(tmp_path / "dpo")
    invoke("train", "sft", "--dataset-name", str(pairs), "--output-dir", sft, "--policy", "sam3",
           "--model-name-or-path", "tiny:sam3", "--max-steps", "2")  # fmt: skip
    invoke("train", "dpo", "--dataset-name", str(pairs), "--model-name-or-path", sft, "--output-dir", dpo,
           "--max-steps", "2")  # fmt: skip
    invoke("eval", "ris", "--model", dpo, "--data", str(pairs))
    report = json.loads((tmp_path / "dpo" / f"eval-ris-{pairs.name}" / "report.json").read_text())
    assert report["metrics"]["train"]["n"] == 6
    assert saved_policy(dpo) is Sam3Policy
    assert json.loads((tmp_path / "sft" / "training_config.json").read_text())["policy"] == "sam3"


@pytest.mark.parametrize("freeze", [pytest.param(True, id="frozen-encoder"), pytest.param(False, id="trained-encoder")])
def test_freeze_image_encoder_decides_whether_sam3s_image_encoder_gets_gradients(
    pairs: Path, tmp_path: Path, freeze: bool
) -> None:
    config = SftConfig(dataset_name=str(pairs), output_dir=str(tmp_path), freeze_image_encoder=freeze, **SAM3)
    objective = SftObjective(config)
    policy = objective.build(torch.device("cpu"))
    dataset = objective.dataset()
    loss, _ = objective.loss(policy, objective.collate([dataset[i] for i in range(2)]))
    loss.backward()
    encoder = list(policy.sam.vision_encoder.parameters())
    assert all(p.requires_grad != freeze for p in encoder)
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder) != freeze
    assert objective.cache.encoded == (1 if freeze else 0)  # regions 0 and 1 share a picture; cached when frozen


@pytest.mark.parametrize("size", [pytest.param((60, 80), id="wide"), pytest.param((90, 40), id="tall")])
def test_a_mask_goes_onto_the_whole_map_and_back_to_the_image(policy: Sam3Policy, size: tuple[int, int]) -> None:
    """SAM 3 stretches the whole image onto its square input: a target covers the whole map (no padding), and
    the map read back at the image's size gives the mask again."""
    height, width = size
    mask = np.zeros(size, bool)
    mask[height // 4 : height // 2, width // 2 : width - 4] = True
    target, valid = policy.mask_target(mask)
    assert valid.all() and target.shape == (64, 64)
    rows, cols = np.nonzero(target.numpy())
    scale_y, scale_x = 64 / height, 64 / width  # each axis stretched on its own
    expected = (height // 4 * scale_y, height // 2 * scale_y, width // 2 * scale_x, (width - 4) * scale_x)
    assert (rows.min(), rows.max() + 1, cols.min(), cols.max() + 1) == pytest.approx(expected, abs=1)
    (back,) = policy.image_masks(10 * (2 * target - 1)[None], [size])
    i, u = intersection_union(back, mask)
    assert i / u > 0.9
