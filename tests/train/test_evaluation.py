"""Evaluation during training: the seeded held-out split by image, and the scores against hand-computed ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from syngen.devtools.shapes import make_shapes_dataset
from syngen.errors import ConfigError
from syngen.train.data import PairDataset, RegionDataset, load_split
from syngen.train.evaluation import holdout, image_groups, pointing_scores, ris_scores
from syngen.train.policy import image_masks


@pytest.fixture(scope="module")
def shapes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_shapes_dataset(tmp_path_factory.mktemp("shapes"), images=8, kinds=("dilated",))


@pytest.fixture(scope="module")
def regions(shapes: Path) -> RegionDataset:
    return RegionDataset(load_split(str(shapes), "grounding", "train"))


@pytest.mark.parametrize(
    "fraction, held_images",
    [
        pytest.param(0.25, 2, id="a-quarter-of-8-images"),
        pytest.param(0.1, 1, id="at-least-one-image"),
        pytest.param(0.99, 7, id="never-every-image"),
    ],
)
def test_holdout_splits_by_image(regions: RegionDataset, fraction: float, held_images: int) -> None:
    train, test = holdout(regions, fraction, seed=0)
    rows = image_groups(regions)
    train_rows, test_rows = {rows[i] for i in train.indices}, {rows[i] for i in test.indices}
    assert len(test_rows) == held_images and not train_rows & test_rows
    assert sorted(train.indices + test.indices) == list(range(len(regions)))  # every region in one part
    assert all(len([i for i in test.indices if rows[i] == row]) == 2 for row in test_rows)  # both regions held out


def test_holdout_is_seeded(regions: RegionDataset) -> None:
    assert holdout(regions, 0.25, seed=3)[1].indices == holdout(regions, 0.25, seed=3)[1].indices
    assert len({tuple(holdout(regions, 0.25, seed=s)[1].indices) for s in range(6)}) > 1


def test_pairs_are_grouped_by_their_image(shapes: Path) -> None:
    pairs = PairDataset(load_split(str(shapes), "preference", "train"))
    groups = image_groups(pairs)
    assert len(groups) == 16 and len(set(groups)) == 8


def test_a_single_image_cannot_be_held_out(tmp_path: Path) -> None:
    one = RegionDataset(load_split(str(make_shapes_dataset(tmp_path / "one", images=1)), "grounding", "train"))
    with pytest.raises(ConfigError, match="eval_fraction: the training data has 1 image"):
        holdout(one, 0.5, seed=0)


class HalfPolicy(torch.nn.Module):
    """Predicts the left half of the image for "red square" and the right half for anything else (logits ±5 on a
    16×16 decoder grid over a 64-pixel input)."""

    image_size = 64

    def __init__(self) -> None:
        super().__init__()
        self.unused = torch.nn.Parameter(torch.zeros(()))

    def tokenize(self, phrases: list[str]) -> dict[str, torch.Tensor]:
        ids = torch.tensor([[0 if p == "red square" else 1] for p in phrases])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def forward(self, embeddings: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> tuple:
        logits = torch.full((len(input_ids), 16, 16), -5.0)
        for i, token in enumerate(input_ids[:, 0].tolist()):
            (logits[i, :, :8] if token == 0 else logits[i, :, 8:]).fill_(5.0)
        return logits, logits

    def image_masks(self, logits: torch.Tensor, sizes: list[tuple[int, int]]) -> list[np.ndarray]:
        return image_masks(logits, sizes, self.image_size)


@pytest.mark.parametrize("batch_size", [pytest.param(3, id="batches-of-3"), pytest.param(16, id="one-batch")])
def test_ris_scores_equal_iou_computed_by_hand(regions: RegionDataset, batch_size: int) -> None:
    scores = ris_scores(HalfPolicy(), regions, lambda items: torch.zeros(len(items), 1), "mask", batch_size)
    inter, union = [], []
    for item in (regions[i] for i in range(len(regions))):
        pred = np.zeros((64, 64), bool)
        pred[:, :32] = item["phrase"] == "red square"
        pred[:, 32:] = item["phrase"] != "red square"
        inter.append((pred & item["mask"]).sum())
        union.append((pred | item["mask"]).sum())
    expected_miou = float(np.mean(np.array(inter) / np.array(union)))
    assert scores["eval/mIoU"] == pytest.approx(expected_miou, rel=1e-12)
    assert scores["eval/oIoU"] == pytest.approx(sum(inter) / sum(union), rel=1e-12)
    assert 0.05 < scores["eval/mIoU"] < 0.5  # the half-image guess overlaps each shape partly


def test_pointing_scores_count_peaks_inside_each_box(regions: RegionDataset) -> None:
    """Maps that peak at the box centre for the red square and at the corner (0, 0) for the blue circle."""
    items = [regions[i] for i in range(len(regions))]

    def per_item(images: list, phrases: list[str]) -> torch.Tensor:
        maps = torch.zeros(len(phrases), 64, 64)
        for i, (image, phrase) in enumerate(zip(images, phrases, strict=True)):
            box = next(it["box"] for it in items if it["image"].tobytes() == image.tobytes() and it["phrase"] == phrase)
            x, y = (0, 0) if phrase != "red square" else (int(box[0] + box[2]) // 2, int(box[1] + box[3]) // 2)
            maps[i, y, x] = 1.0
        return maps

    assert pointing_scores(per_item, regions, batch_size=5) == {"eval/pointing": 0.5}
