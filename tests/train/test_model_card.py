"""The model card's Hub metadata: base_model, datasets and the final eval metrics as a model-index."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syngen.train.checkpoint import final_eval, model_card
from syngen.train.config import AmcConfig, SftConfig

HISTORY = [
    {"step": 2, "epoch": 1.0, "loss": 0.5},
    {"step": 2, "epoch": 1.0, "eval/mIoU": 0.25, "eval/oIoU": 0.5},
    {"step": 4, "epoch": 2.0, "eval/mIoU": 0.5, "eval/oIoU": "nan"},
    {"step": 4, "epoch": 2.0, "loss": 0.25},
]


def front_matter(card: str) -> dict:
    return yaml.safe_load(card.split("---")[1])


def test_final_eval_is_the_last_eval_record_without_its_prefix() -> None:
    assert final_eval(HISTORY) == {"mIoU": 0.5}  # a non-finite value (logged as a string) is left out
    assert final_eval(HISTORY[:1]) == {}


@pytest.mark.parametrize(
    "dataset, split, expected_split",
    [
        pytest.param("org/shapes", {"dataset_test_split": "validation"}, "validation", id="hub-dataset-test-split"),
        pytest.param("outputs/shapes", {"eval_fraction": 0.2}, "held-out 0.2 of train", id="local-held-out"),
    ],
)
def test_card_names_base_model_datasets_and_eval_metrics(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, dataset: str, split: dict, expected_split: str
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs" / "sft").mkdir(parents=True)  # a local checkpoint: not a Hub id
    config = SftConfig(dataset_name=dataset, output_dir=str(tmp_path / "run"), report_to="none", **split)
    bases = ["outputs/sft", "facebook/sam-vit-base", "tiny:text-encoder"]
    card = model_card(config, {"step": 4, "log_history": HISTORY}, {"base_models": bases, "task": "image-segmentation"})
    front = front_matter(card)
    assert front["base_model"] == ["facebook/sam-vit-base"]
    assert front["datasets"] == [dataset]
    index = front["model-index"]
    assert index[0]["name"] == "run"
    result = index[0]["results"][0]
    assert result["task"] == {"type": "image-segmentation"}
    assert result["dataset"] == {"name": "shapes", "type": dataset, "split": expected_split}
    assert result["metrics"] == [{"type": "mIoU", "value": 0.5, "name": "mIoU"}]
    assert "mIoU 0.5000" in card and "`outputs/sft`" in card  # the text names every base, local ones too


def test_a_run_without_evaluation_has_no_model_index(tmp_path: Path) -> None:
    config = AmcConfig(dataset_name="d", output_dir=str(tmp_path), hub_model_id="org/amc", report_to="none")
    front = front_matter(model_card(config, {"log_history": HISTORY[:1]}, {"base_models": ["Salesforce/blip"]}))
    assert "model-index" not in front and front["base_model"] == ["Salesforce/blip"]
