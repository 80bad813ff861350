"""`syngen eval` from the command line: options that reach the evaluation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.devtools.shapes import make_shapes_dataset


def invoke(*args: str) -> str:
    result = CliRunner().invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.output


def test_eval_pointing_uses_the_gradcam_layer_the_checkpoint_was_trained_with(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An amc run at layer 1 (not the default -4, i.e. layer 0 of the twin's 4): `eval pointing` reads its maps
    at layer 1 unless told otherwise, and says so in its report."""
    import syngen.train.amc as amc

    data = make_shapes_dataset(tmp_path / "shapes", images=2, kinds=())
    out = tmp_path / "amc"
    invoke("train", "amc", "--dataset-name", str(data), "--output-dir", str(out),
           "--model-name-or-path", "tiny:itm-blip", "--max-steps", "1", "--gradcam-layer", "1",
           "--per-device-train-batch-size", "4")  # fmt: skip
    layers: list[int] = []
    heatmaps = amc.heatmaps
    monkeypatch.setattr(amc, "heatmaps", lambda itm, images, phrases, layer, **kw: layers.append(layer) or heatmaps(
        itm, images, phrases, layer, **kw))  # fmt: skip
    for given, expected in (([], 1), (["--gradcam-layer", "0"], 0)):
        layers.clear()
        report_path = tmp_path / f"pointing-{expected}.json"
        invoke("eval", "pointing", "--model", str(out), "--data", str(data), "--out", str(report_path), *given)
        report = json.loads(report_path.read_text())
        assert report["gradcam_layer"] == expected and report["metrics"]["n"] == 4
        assert layers and set(layers) == {expected}
