"""`syngen eval ris` and `syngen eval pointing`: RefCOCO-style tables (RLE or polygons, sentence lists, boxes) and
syngen datasets score alike; a killed `eval ris` resumes and scores only the rest."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import datasets
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from syngen.cli import app
from syngen.devtools.shapes import make_shapes_dataset
from syngen.eval.evaluate import PredictionLog, evaluate_pointing, evaluate_ris, pointing_examples, trained_layer
from syngen.masks import decode_rle, encode_rle
from syngen.train.policy import TextPromptableSam
from syngen.viz import COLOUR_BAR, TILE
from tests.eval.sets.test_tables import SQUARE

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("policy")
    TextPromptableSam.from_parts("tiny:segmenter", "tiny:text-encoder", prompter_heads=2).save_pretrained(folder)
    return folder


def refcoco_style(shapes: Path, path: Path) -> Path:
    """The shapes dataset's regions as a RefCOCO-style parquet file: one row per object, two sentences each."""
    grounding = datasets.load_dataset(str(shapes / "dataset"), "grounding", split="train")
    rows = {"picture": [], "refs": [], "rle": []}
    for row in grounding:
        for region in row["regions"]:
            rows["picture"].append(row["image"])
            rows["refs"].append([{"sent": region["phrase"]}, {"raw": region["phrase"]}])
            rows["rle"].append(region["mask"])
    datasets.Dataset.from_dict(rows).cast_column("picture", datasets.Image()).to_parquet(str(path))
    return path


def test_refcoco_style_parquet_scores_as_the_syngen_dataset(policy: Path, tmp_path: Path) -> None:
    shapes = make_shapes_dataset(tmp_path / "shapes", images=2, kinds=())
    table = refcoco_style(shapes, tmp_path / "refs.parquet")
    result = CliRunner().invoke(
        app,
        ["eval", "ris", "--model", str(policy), "--data", str(table), "--image-column", "picture",
         "--text-column", "refs", "--mask-column", "rle", "--batch-size", "3"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((policy / "eval-ris-refs.parquet" / "report.json").read_text())
    assert report["format"] == "columns" and report["splits"] == ["refs"]  # one file: its name is the split
    scores = report["metrics"]["refs"]
    assert scores["n"] == 2 * 2 * 2  # two images, two objects, two sentences each
    native = evaluate_ris(str(policy), str(shapes), batch_size=4, output_dir=tmp_path / "native")
    assert native["format"] == "syngen" and native["metrics"]["train"]["n"] == 4
    for key in ("oIoU", "mIoU", "gIoU", "Prec@0.5"):
        assert scores[key] == pytest.approx(native["metrics"]["train"][key]), key
    assert "oIoU" in result.output and "Prec@0.9" in result.output


def test_a_missing_column_is_named(policy: Path, tmp_path: Path) -> None:
    shapes = make_shapes_dataset(tmp_path / "shapes", images=1, kinds=())
    table = refcoco_style(shapes, tmp_path / "refs.parquet")
    result = CliRunner().invoke(app, ["eval", "ris", "--model", str(policy), "--data", str(table)])
    assert result.exit_code == 2
    message = " ".join(result.output.split())
    assert "matches no known layout: its columns are picture, refs, rle." in message
    assert "--image-column image, --text-column sentences, --mask-column segmentation" in message


def test_perfect_predictions_score_one(policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With the policy's masks replaced by the targets, every metric is 1: the pipeline around the model is exact."""
    shapes = make_shapes_dataset(tmp_path / "shapes", images=2, kinds=())
    grounding = datasets.load_dataset(str(shapes / "dataset"), "grounding", split="train")
    truth = iter(decode_rle(r["mask"]) for row in grounding for r in row["regions"])
    monkeypatch.setattr(TextPromptableSam, "image_masks", lambda self, logits, sizes: [next(truth) for _ in sizes])
    scores = evaluate_ris(str(policy), str(shapes), batch_size=3, output_dir=tmp_path / "eval")["metrics"]["train"]
    assert scores["n"] == 4
    assert all(scores[k] == 1.0 for k in ("oIoU", "mIoU", "gIoU", "Prec@0.9"))


def test_pointing_scores_a_baseline_beside_the_model_and_draws_the_sheet(tmp_path: Path) -> None:
    shapes = make_shapes_dataset(tmp_path / "shapes", images=2, kinds=())
    result = CliRunner().invoke(
        app,
        ["eval", "pointing", "--model", "tiny:itm-blip", "--baseline", "tiny:itm-blip", "--data", str(shapes),
         "--heatmaps", "3", "--batch-size", "3", "--out", str(tmp_path / "pointing.json")],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "pointing.json").read_text())
    assert report["metrics"] == report["baseline"]["metrics"]  # the same checkpoint twice
    assert report["metrics"]["n"] == 4 and report["gradcam_layer"] == -4  # two phrases on each of two images
    assert 0 <= report["metrics"]["accuracy"] == report["metrics"]["hits"] / 4 <= 1
    assert Image.open(tmp_path / "pointing-heatmaps.png").size == (2 * TILE, 3 * TILE + COLOUR_BAR)
    assert "accuracy" in result.output and "baseline" in result.output


def test_perfect_heat_maps_point_into_every_box(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With each heat map replaced by its box, every phrase is a hit: the pipeline around the model is exact."""
    shapes = make_shapes_dataset(tmp_path / "shapes", images=2, kinds=())

    def box_maps(itm, images, phrases, layer):  # noqa: ANN001, ANN202
        maps = []
        for image, phrase in zip(images, phrases, strict=True):
            ex = next(e for e in pointing_examples(str(shapes), "train", "", "", "", "") if e["phrase"] == phrase
                      and e["image"].tobytes() == image.tobytes())  # fmt: skip
            heat = torch.zeros(image.height, image.width)
            x1, y1, x2, y2 = (round(v) for v in ex["boxes"][0])
            heat[y1 + 1 : y2 - 1, x1 + 1 : x2 - 1] = 1
            maps.append(heat)
        return maps

    monkeypatch.setattr("syngen.train.amc.heatmaps", box_maps)
    assert evaluate_pointing("tiny:itm-blip", str(shapes), batch_size=3)["metrics"] == {
        "n": 4,
        "hits": 4,
        "accuracy": 1.0,
    }


@pytest.mark.parametrize("source", ["bbox", "mask"])
def test_refcoco_style_boxes_as_coco_xywh_or_from_the_mask(tmp_path: Path, source: str) -> None:
    shapes = make_shapes_dataset(tmp_path / "shapes", images=1, kinds=())
    grounding = datasets.load_dataset(str(shapes / "dataset"), "grounding", split="train")
    regions = grounding[0]["regions"]
    rows = {"image": [grounding[0]["image"]] * 2, "sentences": [[r["phrase"]] for r in regions]}
    if source == "bbox":
        rows["bbox"] = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in (r["box"] for r in regions)]
    else:
        rows["segmentation"] = [r["mask"] for r in regions]
    table = tmp_path / "refs.parquet"
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).to_parquet(str(table))
    found = list(pointing_examples(str(table), "train", "image", "sentences", "bbox", "segmentation"))
    native = list(pointing_examples(str(shapes), "train", "", "", "", ""))
    assert [(e["phrase"], e["boxes"]) for e in found] == [(e["phrase"], e["boxes"]) for e in native]


def test_syngen_regions_with_one_phrase_are_one_query_with_every_box(tmp_path: Path) -> None:
    from syngen.devtools.shapes import make_sample
    from syngen.export import CardInfo, export_dataset

    sample = make_sample(0, ())
    sample["regions"] = sample["regions"] + [dict(sample["regions"][0], box=[0.0, 0.0, 4.0, 4.0])]
    export_dataset(iter([sample]), tmp_path / "two", CardInfo(name="two"))
    found = {e["phrase"]: e["boxes"] for e in pointing_examples(str(tmp_path / "two"), "train", "", "", "", "")}
    assert found["red square"][1:] == [[0.0, 0.0, 4.0, 4.0]] and len(found["red square"]) == 2
    assert len(found["blue circle"]) == 1


def test_pointing_uses_the_layer_the_checkpoint_was_trained_with(tmp_path: Path) -> None:
    (tmp_path / "training_config.json").write_text(json.dumps({"gradcam_layer": 1}))
    assert trained_layer(str(tmp_path)) == 1
    assert trained_layer("tiny:itm-blip") == -4


def test_a_killed_eval_resumes_and_scores_only_the_rest(
    policy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import syngen.eval.evaluate

    shapes = make_shapes_dataset(tmp_path / "shapes", images=3, kinds=())  # six expressions
    full = evaluate_ris(str(policy), str(shapes), batch_size=2, output_dir=tmp_path / "full")
    real = syngen.eval.evaluate.score_batch
    scored: list[int] = []

    def killed_after(batches: int):  # noqa: ANN202
        def score(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
            if len(scored) == batches:
                raise KeyboardInterrupt  # the kill, after `batches` batches were stored
            scored.append(len(args[3]))
            return real(*args, **kwargs)

        return score

    monkeypatch.setattr("syngen.eval.evaluate.score_batch", killed_after(2))
    with pytest.raises(KeyboardInterrupt):
        evaluate_ris(str(policy), str(shapes), batch_size=2, output_dir=tmp_path / "run")
    assert len((tmp_path / "run" / "predictions.jsonl").read_text().splitlines()) == 2
    scored.clear()
    monkeypatch.setattr("syngen.eval.evaluate.score_batch", killed_after(99))
    again = evaluate_ris(str(policy), str(shapes), batch_size=2, output_dir=tmp_path / "run")
    assert scored == [2] and again["scored"] == 2 and again["resumed"] == 4
    assert again["metrics"] == full["metrics"]
    scored.clear()
    assert evaluate_ris(str(policy), str(shapes), batch_size=2, output_dir=tmp_path / "run")["scored"] == 0
    assert scored == []


def record(key: str) -> dict:
    return {"key": key, "i": 1, "u": 2, "pred": 1, "target": 2}


@pytest.mark.parametrize(
    "tail",
    [
        pytest.param(b'[{"key":"d","i":1,"u"', id="torn-json"),
        pytest.param(b'[{"key":"d","i":1}]', id="whole-line-without-newline"),
        pytest.param(b'[{"key":"d"}]\n', id="records-missing-fields"),
        pytest.param(b"\x00\x00\x00\n", id="garbage"),
    ],
)
def test_a_batch_torn_by_a_kill_is_dropped_and_cut_off(tmp_path: Path, tail: bytes) -> None:
    log = PredictionLog(tmp_path, {"model": "m"})
    log.append([record("a"), record("b")])
    log.append([record("c")])
    with (tmp_path / "predictions.jsonl").open("ab") as f:
        f.write(tail)  # the kill came in the middle of this write
    reread = PredictionLog(tmp_path, {"model": "m"})
    assert set(reread.records) == {"a", "b", "c"}
    reread.append([record("d")])
    assert set(PredictionLog(tmp_path, {"model": "m"}).records) == {"a", "b", "c", "d"}


def test_a_damaged_fingerprint_starts_over(tmp_path: Path) -> None:
    PredictionLog(tmp_path, {"model": "m"}).append([record("a")])
    (tmp_path / "fingerprint.json").write_text("{not json")
    assert PredictionLog(tmp_path, {"model": "m"}).records == {}


@pytest.mark.parametrize(
    "fingerprint, resume, kept",
    [
        pytest.param({"model": "m"}, True, {"a"}, id="same-run-resumes"),
        pytest.param({"model": "m"}, False, set(), id="no-resume-starts-over"),
        pytest.param({"model": "retrained"}, True, set(), id="another-checkpoint-starts-over"),
    ],
)
def test_predictions_of_another_run_are_not_reused(tmp_path: Path, fingerprint: dict, resume: bool, kept: set) -> None:
    PredictionLog(tmp_path, {"model": "m"}).append([record("a")])
    log = PredictionLog(tmp_path, fingerprint, resume)
    assert set(log.records) == kept and log.restarted == (not kept)


@pytest.mark.slow
def test_a_process_killed_with_sigkill_resumes(policy: Path, tmp_path: Path) -> None:
    """The real thing: `syngen eval ris` in a subprocess, SIGKILLed once some batches are stored, then rerun."""
    import os
    import signal
    import subprocess
    import sys
    import time

    shapes = make_shapes_dataset(tmp_path / "shapes", images=40, kinds=())  # 80 expressions
    out = tmp_path / "eval"
    command = [sys.executable, "-m", "syngen.cli", "eval", "ris", "--model", str(policy), "--data", str(shapes),
               "--batch-size", "1", "--output-dir", str(out)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    repo = Path(__file__).resolve().parents[2]
    process = subprocess.Popen(command, cwd=repo, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    predictions = out / "predictions.jsonl"
    deadline = time.monotonic() + 300
    while not (predictions.exists() and len(predictions.read_bytes().splitlines()) >= 5):
        assert process.poll() is None and time.monotonic() < deadline, "the eval ended before it could be killed"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    stored = len(PredictionLog(out, json.loads((out / "fingerprint.json").read_text())).records)
    assert 5 <= stored < 80
    done = subprocess.run(command, cwd=repo, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert (report["resumed"], report["scored"]) == (stored, 80 - stored)
    assert report["metrics"]["train"]["n"] == 80


def refcoco_with_nan_box(shapes: Path, path: Path) -> Path:
    """The shapes picture's two regions as a RefCOCO-style table whose first box (COCO xywh) has a NaN."""
    grounding = datasets.load_dataset(str(shapes / "dataset"), "grounding", split="train")
    regions = grounding[0]["regions"]
    boxes = [[x1, y1, x2 - x1, y2 - y1] for x1, y1, x2, y2 in (r["box"] for r in regions)]
    boxes[0][2] = float("nan")
    rows = {"image": [grounding[0]["image"]] * 2, "sentences": [[r["phrase"]] for r in regions], "bbox": boxes}
    datasets.Dataset.from_dict(rows).cast_column("image", datasets.Image()).to_parquet(str(path))
    return path


def syngen_with_nan_box(shapes: Path, path: Path) -> Path:
    """The shapes dataset with its first region's box made NaN in the parquet (a hand-edited dataset)."""
    from tests.train.test_data import edit_rows

    def spoil(rows: list[dict]) -> None:
        rows[0]["regions"][0]["box"] = [float("nan"), 1.0, 5.0, 5.0]

    edit_rows(shapes, "grounding", spoil)
    return shapes


@pytest.mark.parametrize(
    "make", [pytest.param(refcoco_with_nan_box, id="refcoco-style"), pytest.param(syngen_with_nan_box, id="syngen")]
)
def test_pointing_skips_nan_boxes_and_reports_them(make, tmp_path: Path) -> None:  # noqa: ANN001
    shapes = make_shapes_dataset(tmp_path / "shapes", images=1, kinds=())
    data = str(make(shapes, tmp_path / "nan.parquet" if make is refcoco_with_nan_box else tmp_path / "nan"))
    skipped: Counter[str] = Counter()
    found = list(pointing_examples(data, "train", "image", "sentences", "bbox", "segmentation", skipped))
    assert [e["phrase"] for e in found] == ["blue circle"]
    assert skipped == {"boxes with a NaN or infinite coordinate": 1}
    result = CliRunner().invoke(app, ["eval", "pointing", "--model", "tiny:itm-blip", "--data", data,
                                      "--out", str(tmp_path / "report.json")])  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "skipped 1 boxes with a NaN or infinite coordinate" in " ".join(result.output.split())
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["skipped"] == {"boxes with a NaN or infinite coordinate": 1} and report["metrics"]["n"] == 1


@pytest.mark.parametrize(
    "mask, words",
    [
        pytest.param({"size": [64, 64], "counts": "0"}, "garbage RLE", id="garbage-rle"),
        pytest.param(encode_rle(SQUARE), "mask size [8, 10]", id="another-size"),
    ],
)
def test_a_bad_refcoco_mask_names_its_row(mask: dict, words: str, policy: Path, tmp_path: Path) -> None:
    shapes = make_shapes_dataset(tmp_path / "shapes", images=1, kinds=())
    table = refcoco_style(shapes, tmp_path / "refs.parquet")
    rows = datasets.load_dataset("parquet", data_files=str(table), split="train").to_dict()
    rows["rle"][1] = mask
    bad = tmp_path / "bad.parquet"
    datasets.Dataset.from_dict(rows).cast_column("picture", datasets.Image()).to_parquet(str(bad))
    result = CliRunner().invoke(app, ["eval", "ris", "--model", str(policy), "--data", str(bad), "--image-column",
                                      "picture", "--text-column", "refs", "--mask-column", "rle"])  # fmt: skip
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{bad}: row 1, column 'rle'" in flat and words in flat


def test_a_bad_syngen_mask_names_its_row_and_region(policy: Path, tmp_path: Path) -> None:
    from tests.train.test_data import edit_rows

    shapes = make_shapes_dataset(tmp_path / "shapes", images=1, kinds=())

    def spoil(rows: list[dict]) -> None:
        rows[0]["regions"][1]["mask"] = encode_rle(SQUARE)  # 8 x 10 on a 64 x 64 image

    edit_rows(shapes, "grounding", spoil)
    result = CliRunner().invoke(app, ["eval", "ris", "--model", str(policy), "--data", str(shapes),
                                      "--output-dir", str(tmp_path / "eval")])  # fmt: skip
    flat = " ".join(result.output.split())
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert f"{shapes}: row 0, column 'regions[1].mask'" in flat and "mask size [8, 10]" in flat
