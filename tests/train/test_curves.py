"""curves.png: which metrics go in which panel, non-finite values left out, a PNG written."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from syngen.train.curves import panels, plot_curves, series

HISTORY = [
    {"step": 1, "epoch": 0.5, "loss": 0.9, "loss/bce": 0.5, "rewards/margins": 0.0, "learning_rate": 1e-4},
    {"step": 2, "epoch": 1.0, "loss": "nan", "loss/bce": 0.4, "rewards/margins": 0.1, "learning_rate": 1e-4},
    {"step": 2, "epoch": 1.0, "eval/mIoU": 0.3, "eval/oIoU": 0.35},
    {"step": 4, "epoch": 2.0, "loss": 0.5, "loss/bce": 0.2, "rewards/margins": 0.3, "learning_rate": 1e-4},
    {"step": 4, "epoch": 2.0, "eval/mIoU": 0.6, "eval/oIoU": 0.65},
]


def test_series_keep_finite_numbers_by_step() -> None:
    found = series(HISTORY)
    assert found["loss"] == ([1, 4], [0.9, 0.5])  # the "nan" string of step 2 is left out
    assert found["eval/mIoU"] == ([2, 4], [0.3, 0.6])
    assert "step" not in found and "epoch" not in found


@pytest.mark.parametrize(
    "names, expected",
    [
        pytest.param(
            ["loss", "loss/bce", "rewards/margins", "eval/mIoU", "learning_rate", "logps/chosen"],
            [("losses", ["loss", "loss/bce"]), ("rewards", ["rewards/margins"]), ("evaluation", ["eval/mIoU"])],
            id="dpo-with-eval",
        ),
        pytest.param(["loss", "loss/amc", "in_box_ratio"], [("losses", ["loss", "loss/amc"])], id="amc-no-eval"),
        pytest.param(["learning_rate"], [], id="nothing-to-draw"),
    ],
)
def test_panels_group_losses_rewards_and_eval(names: list[str], expected: list) -> None:
    assert panels(names) == expected


def test_plot_curves_writes_a_png_one_panel_wide_each(tmp_path: Path) -> None:
    path = plot_curves(HISTORY, tmp_path / "curves.png", "a run")
    assert path == tmp_path / "curves.png"
    with Image.open(path) as image:
        three = image.size
    assert plot_curves(HISTORY[2:3], tmp_path / "one.png") is not None  # the eval panel alone
    with Image.open(tmp_path / "one.png") as image:
        one = image.size
    assert three[0] == pytest.approx(3 * one[0], rel=0.05) and three[1] == one[1]
    assert plot_curves([{"step": 1, "epoch": 1.0, "learning_rate": 1.0}], tmp_path / "none.png") is None
    assert not (tmp_path / "none.png").exists()
