"""Bad training and eval input (issue 20, item 8): each case exits 2 with one paragraph naming the path, the option
or the row, never a traceback; a path that looks local is never looked up on the Hub; NaN boxes are skipped and
counted in the log."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import datasets
import huggingface_hub
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.devtools.shapes import make_shapes_dataset
from syngen.masks import encode_rle, rle_problem
from syngen.refs import looks_local
from syngen.train.policy import TextPromptableSam

TINY = [
    "--sam-model-name-or-path", "tiny:segmenter", "--text-encoder-name-or-path", "tiny:text-encoder",
    "--prompter-heads", "2",
]  # fmt: skip


@pytest.fixture(scope="module")
def init(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained policy folder for ``train dpo --model-name-or-path`` and ``eval ris --model``."""
    folder = tmp_path_factory.mktemp("init")
    TextPromptableSam.from_parts("tiny:segmenter", "tiny:text-encoder", prompter_heads=2).save_pretrained(folder)
    return folder


def edit_rows(data: Path, config: str, change: Callable[[list[dict]], None]) -> None:
    """Rewrites every shard of ``config`` in the dataset of output folder ``data`` with ``change`` applied to
    its rows (a list of dicts, changed in place), keeping the schema."""
    for shard in (data / "dataset" / "data" / config).glob("*.parquet"):
        table = pq.read_table(shard)
        rows = table.to_pylist()
        change(rows)
        pq.write_table(pa.Table.from_pylist(rows, schema=table.schema), shard)


def first_mask(rows: list[dict], value: dict) -> None:
    rows[0]["regions"][0]["mask"] = value


def first_chosen(rows: list[dict], value: dict) -> None:
    rows[0]["chosen"] = value


def no_regions(data: Path) -> None:
    """Makes the dataset a hand-built one without ``regions``: the column dropped, the card naming only the
    configs (no features)."""
    for shard in (data / "dataset" / "data" / "grounding").glob("*.parquet"):
        pq.write_table(pq.read_table(shard).drop_columns(["regions"]), shard)
    (data / "dataset" / "README.md").write_text(
        "---\nconfigs:\n- config_name: grounding\n  data_files:\n  - split: train\n    path: data/grounding/*\n---\n"
    )


OTHER_SIZE = encode_rle(np.ones((32, 48), bool))
GARBAGE = {"size": [64, 64], "counts": "garbage!!"}


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, list(args))
    assert "Traceback" not in result.output
    return result.exit_code, result.output


# case id -> (how the shapes dataset is spoiled (None: left as is), the command (DATA, INIT, OUT filled in),
#             the words the message must hold)
CASES = {
    "missing-config": (None, "dpo", ["'preference'", "grounding"]),
    "no-regions-column": (no_regions, "sft", ["'grounding'", "regions"]),
    "sft-mask-of-another-size": (
        lambda d: edit_rows(d, "grounding", lambda r: first_mask(r, OTHER_SIZE)),
        "sft",
        ["'shapes000'", "region 0", "mask size [32, 48]", "[64, 64]"],
    ),
    "sft-garbage-rle": (
        lambda d: edit_rows(d, "grounding", lambda r: first_mask(r, GARBAGE)),
        "sft",
        ["'shapes000'", "region 0", "garbage RLE", "garbage!!"],
    ),
    "dpo-mask-of-another-size": (
        lambda d: edit_rows(d, "preference", lambda r: first_chosen(r, OTHER_SIZE)),
        "dpo",
        ["preference pair", "chosen", "mask size [32, 48]"],
    ),
    "dpo-garbage-rle": (
        lambda d: edit_rows(d, "preference", lambda r: first_chosen(r, GARBAGE)),
        "dpo",
        ["preference pair", "chosen", "garbage RLE"],
    ),
}


@pytest.mark.parametrize("case", list(CASES), ids=list(CASES))
def test_bad_data_exits_2_naming_what_is_wrong(case: str, init: Path, tmp_path: Path) -> None:
    spoil, objective, words = CASES[case]
    data = make_shapes_dataset(tmp_path / "shapes", images=1, kinds=() if case == "missing-config" else ("dilated",))
    if spoil is not None:
        spoil(data)
    model = TINY if objective == "sft" else ["--model-name-or-path", str(init)]
    code, output = run(
        "train", objective, "--dataset-name", str(data), "--output-dir", str(tmp_path / "out"), "--max-steps", "2",
        "--per-device-train-batch-size", "4", *model,
    )  # fmt: skip
    flat = " ".join(output.split())
    assert code == 2, output
    assert str(data) in flat
    for word in words:
        assert word in flat


@pytest.mark.parametrize(
    "spec, words",
    [
        pytest.param("outputs/quickstrt", ["no such local folder", "Hub is offline"], id="reads-as-a-hub-id-offline"),
        pytest.param("./outputs/quickstrt", ["no such folder", "Hub was not asked"], id="relative-path"),
        pytest.param("/no/such/dataset", ["no such folder", "Hub was not asked"], id="absolute-path"),
    ],
)
def test_a_mistyped_dataset_path_names_itself(
    spec: str, words: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    asked: list[str] = []
    load = datasets.load_dataset

    def spy(path: str, *args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        asked.append(path)
        return load(path, *args, **kwargs)

    monkeypatch.setattr(datasets, "load_dataset", spy)
    code, output = run("train", "sft", "--dataset-name", spec, "--output-dir", str(tmp_path / "out"), *TINY)
    flat = " ".join(output.split())
    assert code == 2 and spec in flat, output
    for word in words:
        assert word in flat
    assert asked == ([spec] if not looks_local(spec) else [])  # the Hub is asked only about what may be an id


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(["eval", "ris", "--model", "outputs/no_such_ckpt"], id="eval-ris-model-reads-as-a-hub-id"),
        pytest.param(["eval", "ris", "--model", "./no_such_ckpt"], id="eval-ris-model-path"),
        pytest.param(["train", "dpo", "--model-name-or-path", "outputs/no_such_ckpt"], id="dpo-init-reads-as-a-hub-id"),
        pytest.param(["train", "dpo", "--model-name-or-path", "/no/such/ckpt"], id="dpo-init-path"),
        pytest.param(["train", "amc", "--model-name-or-path", "./no_such_itm"], id="amc-model-path"),
        pytest.param(
            ["eval", "pointing", "--model", "outputs/no_such_itm"], id="eval-pointing-model-reads-as-a-hub-id"
        ),
    ],
)
def test_a_missing_model_folder_is_named(command: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # where an eval of a Hub id would put its folder
    data = make_shapes_dataset(tmp_path / "shapes", images=1, kinds=("dilated",))
    train = command[0] == "train"
    out = ["--output-dir", str(tmp_path / "out")] if train else []
    asked: list[str] = []
    download = huggingface_hub.snapshot_download
    monkeypatch.setattr(
        huggingface_hub, "snapshot_download", lambda repo, **kw: asked.append(repo) or download(repo, **kw)
    )
    code, output = run(*command, "--dataset-name" if train else "--data", str(data), *out)
    flat = " ".join(output.split())
    assert code == 2, output
    assert repr(command[-1]) in flat and "no such" in flat
    assert set(asked) == (set() if looks_local(command[-1]) else {command[-1]})  # only a possible Hub id is looked up
    assert not list(tmp_path.glob("eval-*"))  # nothing written for a checkpoint that is not there


def test_nan_boxes_are_skipped_and_counted(tmp_path: Path) -> None:
    data = make_shapes_dataset(tmp_path / "shapes", images=2, kinds=())

    def spoil(rows: list[dict]) -> None:
        rows[0]["regions"][0]["box"] = [math.nan, 1.0, 5.0, 5.0]
        rows[1]["regions"][1]["box"] = [1.0, 1.0, math.inf, 5.0]

    edit_rows(data, "grounding", spoil)
    code, output = run(
        "train", "amc", "--dataset-name", str(data), "--model-name-or-path", "tiny:itm-blip",
        "--output-dir", str(tmp_path / "out"), "--max-steps", "1", "--per-device-train-batch-size", "2",
    )  # fmt: skip
    assert code == 0, output
    assert "amc: training on 2 regions; skipped 2 boxes with a NaN or infinite coordinate" in " ".join(output.split())


@pytest.mark.parametrize(
    "rle, problem",
    [
        pytest.param(encode_rle(np.eye(4, 5, dtype=bool)), None, id="valid"),
        pytest.param({"size": [4, 5], "counts": [3, 2, 15]}, None, id="valid-uncompressed"),
        pytest.param({"size": [5, 4], "counts": "04"}, "mask size [5, 4]", id="transposed-size"),
        pytest.param({"size": [4, 5], "counts": ""}, "garbage", id="empty-counts"),
        pytest.param({"size": [4, 5], "counts": "0"}, "garbage", id="too-few-pixels"),
        pytest.param({"size": [4, 5], "counts": "0d1"}, "garbage", id="too-many-pixels"),
        pytest.param({"size": [4, 5], "counts": "zz"}, "garbage", id="ends-mid-number"),
        pytest.param({"size": [4, 5], "counts": "ab\u00e9"}, "garbage", id="not-ascii"),
        pytest.param({"size": [4, 5], "counts": [25, -5]}, "garbage", id="negative-run"),
        pytest.param("not a dict", "not a COCO RLE", id="not-a-dict"),
    ],
)
def test_rle_problems(rle: object, problem: str | None) -> None:
    found = rle_problem(rle, 4, 5)
    assert found is None if problem is None else problem in (found or "")
