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


@pytest.mark.parametrize(
    ("task", "given", "expected"),
    [
        pytest.param("ris", [], None, id="ris-auto"),
        pytest.param("ris", ["--cpu-threads", "2"], 2, id="ris-fixed"),
        pytest.param("pointing", [], None, id="pointing-auto"),
        pytest.param("pointing", ["--cpu-threads", "3"], 3, id="pointing-fixed"),
    ],
)
def test_eval_sizes_torch_threads(
    monkeypatch: pytest.MonkeyPatch, task: str, given: list[str], expected: int | None
) -> None:
    from syngen.errors import UsageError
    from syngen.eval import cli

    seen: list[int | None] = []

    def record(setting: int | None) -> int:
        seen.append(setting)
        raise UsageError("stopped here")

    monkeypatch.setattr(cli, "set_torch_threads", record)
    result = CliRunner().invoke(app, ["eval", task, "--model", "m", "--data", "d", *given])
    assert "stopped here" in result.output and seen == [expected]


def test_eval_refuses_zero_cpu_threads() -> None:
    result = CliRunner().invoke(app, ["eval", "ris", "--model", "m", "--data", "d", "--cpu-threads", "0"])
    assert result.exit_code == 2 and "--cpu-threads" in result.output
