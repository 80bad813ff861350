"""Export: the two configs load with datasets, rows round-trip, shards stream, the swap is atomic, the card."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datasets import DatasetInfo, SplitDict, SplitInfo
from huggingface_hub import DatasetCard
from PIL import Image
from pycocotools import mask as mask_utils

from syngen.export import CardInfo, dataset_card, export_dataset, schemas
from syngen.masks import encode_rle
from syngen.sample import image_bytes

WIDTH, HEIGHT = 128, 96
GREY = (128, 128, 128)
TOKEN = "hf_" + "Ab1" * 12


def rect_mask(x1: int, y1: int, x2: int, y2: int) -> np.ndarray:
    mask = np.zeros((HEIGHT, WIDTH), bool)
    mask[y1:y2, x1:x2] = True
    return mask


def make_region(box: tuple[int, int, int, int], phrase: str = "red box", kinds: tuple[str, ...] = ()) -> dict:
    """A region whose mask fills its box, with one negative per kind (boundary: the mask's top half; semantic:
    a block in the bottom-right corner) and two DynRefer views."""
    x1, y1, x2, y2 = box
    negatives = {
        "boundary": rect_mask(x1, y1, x2, (y1 + y2) // 2),
        "semantic": rect_mask(WIDTH - 10, HEIGHT - 10, WIDTH, HEIGHT),
    }
    return {
        "phrase": phrase,
        "box": [float(v) for v in box],
        "box_score": 0.5,
        "mask": encode_rle(rect_mask(*box)),
        "mask_score": 0.75,
        "negatives": [
            {
                "kind": kind,
                "points": [[x1 + 1.0, y1 + 1.0]],
                "labels": [1],
                "iou": 0.5 if kind == "boundary" else 0.0,
                "seed": 7,
                "multimask": kind == "semantic",
                "mask": encode_rle(negatives[kind]),
                "score": 0.25,
            }
            for kind in kinds
        ],
        "views": [
            {
                "t": 0.0,
                "box": [float(v) for v in box],
                "region_box": [0.0, 0.0, 224.0, 224.0],
                "size": 224,
                "score": None,
            },
            {
                "t": 1.0,
                "box": [0.0, 0.0, float(WIDTH), float(HEIGHT)],
                "region_box": [float(v) for v in box],
                "size": 224,
                "score": 3.0,
            },
        ],
    }


def make_sample(index: int, regions: list[dict]) -> dict[str, Any]:
    """A final sample on a plain grey picture (so any drawn colour is easy to find)."""
    return {
        "id": f"img{index:04d}",
        "source": {"kind": "folder", "item": f"seed{index}.png"},
        "image": image_bytes(Image.new("RGB", (WIDTH, HEIGHT), GREY)),
        "width": WIDTH,
        "height": HEIGHT,
        "caption": f"picture {index} with a red box & <ball>",
        "phrases": ["red box", "ball"],
        "synth": {"seed": 100 + index, "index": 0, "parent": f"seed{index}", "prompt": "a red box"},
        "regions": regions,
    }


def make_info(**overrides: Any) -> CardInfo:
    values = {
        "name": "demo",
        "license": "cc-by-4.0",
        "recipe_text": "name: demo\nstages:\n  ground:\n    box_threshold: 0.35\n",
        "models": {"ground": {"id": "IDEA-Research/grounding-dino-base", "revision": "abc123"}},
        "settings": {"ground": {"box_threshold": 0.35, "model": {"id": "x"}}, "negatives": {"iou_band": [0.5, 0.9]}},
        "report": {
            "stages": {
                "ground": {
                    "items_in": 4,
                    "items_out": 3,
                    "failed": 1,
                    "failures": {"no_phrases": 1},
                    "stats": {"dropped_degenerate": 2},
                }
            }
        },
    }
    return CardInfo(**{**values, **overrides})


SAMPLES = [
    make_sample(0, [make_region((10, 10, 50, 40), kinds=("boundary", "semantic")), make_region((60, 20, 100, 80))]),
    make_sample(1, []),
    make_sample(2, [{**make_region((20, 30, 40, 60), phrase="ball", kinds=("boundary",)), "views": []}]),
    make_sample(3, [{"phrase": "ball", "box": [1.0, 2.0, 30.0, 40.0], "box_score": 0.9}]),  # grounded, never segmented
]


def folder_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("out")
    export_dataset(iter(SAMPLES), out, make_info(), shard_rows=3)
    return out / "dataset"


@pytest.fixture(scope="module")
def grounding(exported: Path) -> datasets.Dataset:
    return datasets.load_dataset(str(exported), "grounding", split="train")


@pytest.fixture(scope="module")
def preference(exported: Path) -> datasets.Dataset:
    return datasets.load_dataset(str(exported), "preference", split="train")


def test_layout_has_both_configs_in_shards_of_at_most_shard_rows(exported: Path) -> None:
    files = sorted(str(p.relative_to(exported)) for p in exported.rglob("*") if p.is_file())
    assert files == [
        ".syngen",  # the marker: syngen made this folder and may replace it
        "README.md",
        "data/grounding/train-00000.parquet",
        "data/grounding/train-00001.parquet",
        "data/preference/train-00000.parquet",
        "recipe.yaml",
    ]
    assert [
        pq.read_metadata(exported / "data/grounding" / f).num_rows
        for f in ("train-00000.parquet", "train-00001.parquet")
    ] == [3, 1]
    assert b"huggingface" in pq.read_schema(exported / "data/grounding/train-00000.parquet").metadata
    assert not list(exported.parent.glob(".dataset*"))


def test_grounding_rows_round_trip(grounding: datasets.Dataset) -> None:
    assert grounding["id"] == ["img0000", "img0001", "img0002", "img0003"]
    row = grounding[0]
    assert isinstance(row["image"], Image.Image) and row["image"].size == (WIDTH, HEIGHT)
    assert (row["width"], row["height"], row["phrases"]) == (WIDTH, HEIGHT, ["red box", "ball"])
    assert row["caption"] == SAMPLES[0]["caption"]
    region, source = row["regions"][0], SAMPLES[0]["regions"][0]
    assert region["phrase"] == "red box" and region["box"] == [10.0, 10.0, 50.0, 40.0]
    assert region["box_score"] == pytest.approx(0.5) and region["mask_score"] == pytest.approx(0.75)
    assert region["mask"] == source["mask"]
    decoded = mask_utils.decode({"size": region["mask"]["size"], "counts": region["mask"]["counts"].encode()})
    np.testing.assert_array_equal(decoded.astype(bool), rect_mask(10, 10, 50, 40))
    assert region["views"] == source["views"]
    assert "negatives" not in region
    assert row["provenance"] == {
        "source_kind": "folder",
        "source_item": "seed0.png",
        "synth_seed": 100,
        "synth_index": 0,
        "synth_parent": "seed0",
        "synth_prompt": "a red box",
        "models": [{"stage": "ground", "id": "IDEA-Research/grounding-dino-base", "revision": "abc123"}],
    }


@pytest.mark.parametrize(
    ("index", "expected"),
    [(1, []), (2, [(False, [])]), (3, [(True, [])])],
    ids=["no-regions", "no-views", "no-mask"],
)
def test_grounding_rows_with_missing_parts(grounding: datasets.Dataset, index: int, expected: list) -> None:
    assert [(r["mask"] is None, r["views"]) for r in grounding[index]["regions"]] == expected


def test_overlay_shows_the_masks(grounding: datasets.Dataset) -> None:
    overlay = np.asarray(grounding[0]["overlay"].convert("RGB")).astype(int)
    inside, outside = overlay[30, 30], overlay[5, 120]  # inside the first mask, below its label; background
    assert np.abs(outside - GREY).max() <= 3  # JPEG
    assert np.abs(inside - GREY).max() > 30


def test_preference_rows(preference: datasets.Dataset) -> None:
    assert preference["id"] == ["img0000-0-0", "img0000-0-1", "img0002-0-0"]
    assert preference["image_id"] == ["img0000", "img0000", "img0002"]
    assert preference["kind"] == ["boundary", "semantic", "boundary"]
    assert preference["region_index"] == [0, 0, 0]
    row, region = preference[0], SAMPLES[0]["regions"][0]
    assert row["prompt"] == "red box" and row["box"] == region["box"]
    assert row["chosen"] == region["mask"] and row["rejected"] == region["negatives"][0]["mask"]
    np.testing.assert_array_equal(np.asarray(row["chosen_mask"]), rect_mask(10, 10, 50, 40))
    np.testing.assert_array_equal(np.asarray(row["rejected_mask"]), rect_mask(10, 10, 50, 25))
    assert "image" not in row  # each image is stored once, in grounding (joined by syngen.data.load_preference)
    assert row["iou"] == pytest.approx(0.5) and row["chosen_score"] == pytest.approx(0.75)
    assert row["rejected_score"] == pytest.approx(0.25)
    assert (row["points"], row["labels"], row["seed"]) == ([[11.0, 11.0]], [1], 7)
    assert preference["multimask"] == [False, True, False]


def test_card_loads_with_hub_metadata(exported: Path) -> None:
    card = DatasetCard.load(exported / "README.md")
    assert [(c["config_name"], c["data_files"]) for c in card.data.configs] == [
        ("grounding", [{"split": "train", "path": "data/grounding/train-*"}]),
        ("preference", [{"split": "train", "path": "data/preference/train-*"}]),
    ]
    digest = hashlib.sha256()
    for shard in sorted(exported.glob("data/grounding/*.parquet")):
        digest.update(shard.read_bytes())
    assert card.data.configs[0]["description"] == f"syngen export, shards sha256 {digest.hexdigest()[:16]}"
    assert card.data.license == "cc-by-4.0" and card.data.pretty_name == "demo"
    assert card.data.size_categories == ["n<1K"]
    infos = {i["config_name"]: i for i in card.data.dataset_info}
    assert [s["num_examples"] for s in infos["grounding"]["splits"]] == [4]
    assert [s["num_examples"] for s in infos["preference"]["splits"]] == [3]
    assert infos["grounding"]["download_size"] == sum(f.stat().st_size for f in exported.glob("data/grounding/*"))
    assert "synthetic" in card.data.tags and "image-segmentation" in card.data.task_categories
    for text in [
        f'load_dataset("{exported.resolve()}", "preference", split="train")',
        f'pairs = load_preference("{exported.resolve()}")',
        "box_threshold: 0.35",  # the recipe
        "| ground | `IDEA-Research/grounding-dino-base` | abc123 |",
        "| negatives | iou_band | [0.5, 0.9] |",
        '| ground | 4 | 3 | 1 | {"no_phrases": 1} | {"dropped_degenerate": 2} |',
        "syngen run recipe.yaml",
    ]:
        assert text in card.text
    assert "| ground | model |" not in card.text
    assert (exported / "recipe.yaml").read_text() == make_info().recipe_text


def config_infos(**rows: int) -> dict[str, DatasetInfo]:
    """DatasetInfo per config with only the row count set, as dataset_card reads them."""
    infos = {}
    for name, n in rows.items():
        splits = SplitDict()
        splits.add(SplitInfo(name="train", num_examples=n))
        infos[name] = DatasetInfo(config_name=name, features=schemas()[name].features, splits=splits)
    return infos


def test_card_never_holds_a_token() -> None:
    info = make_info(recipe_text=f"token: {TOKEN}\n", description=f"see {TOKEN}")
    card = dataset_card(info, config_infos(grounding=1), schemas(), Path("dataset"))
    assert TOKEN not in card and "hf_***" in card


@pytest.mark.parametrize(
    ("rows", "category"),
    [
        (1, "n<1K"),
        (999, "n<1K"),
        (1000, "1K<n<10K"),
        (54_321, "10K<n<100K"),
        (999_999, "100K<n<1M"),
        (3_000_000, "n>1M"),
    ],
    ids=["one", "999", "1000", "54k", "999k", "3M"],
)
def test_size_category_follows_the_largest_config(rows: int, category: str) -> None:
    card = DatasetCard(
        dataset_card(make_info(), config_infos(grounding=1, preference=rows), schemas(), Path("dataset"))
    )
    assert card.data.size_categories == [category]


def test_config_without_rows_is_left_out(tmp_path: Path) -> None:
    dataset = export_dataset([make_sample(0, [make_region((10, 10, 50, 40))])], tmp_path, make_info())
    assert not (dataset / "data/preference").exists()
    card = DatasetCard.load(dataset / "README.md")
    assert [c["config_name"] for c in card.data.configs] == ["grounding"]
    assert "Configs with no rows are not published: preference." in card.text
    assert datasets.load_dataset(str(dataset), "grounding", split="train").num_rows == 1
    with pytest.raises(ValueError, match="preference"):
        datasets.load_dataset(str(dataset), "preference")


def test_no_samples_gives_a_card_without_configs(tmp_path: Path) -> None:
    dataset = export_dataset([], tmp_path / "new", make_info())
    assert sorted(p.name for p in dataset.iterdir()) == [".syngen", "README.md", "recipe.yaml"]
    card = DatasetCard.load(dataset / "README.md")
    assert card.data.configs == [] and card.data.size_categories == ["n<1K"]
    assert "Configs with no rows are not published: grounding, preference." in card.text
    assert '| ground | 4 | 3 | 1 | {"no_phrases": 1}' in card.text


def test_exports_in_two_folders_do_not_share_the_load_cache(tmp_path: Path) -> None:
    first = export_dataset([make_sample(0, [])], tmp_path / "a", make_info())
    second = export_dataset([make_sample(1, []), make_sample(2, [])], tmp_path / "b", make_info())
    assert datasets.load_dataset(str(first), "grounding", split="train")["id"] == ["img0000"]
    assert datasets.load_dataset(str(second), "grounding", split="train")["id"] == ["img0001", "img0002"]


def test_shards_are_written_while_samples_stream(tmp_path: Path) -> None:
    shard = tmp_path / ".dataset.tmp/data/grounding/train-00000.parquet"

    def finished() -> bool:
        try:
            return pq.ParquetFile(shard).metadata.num_rows == 2
        except (FileNotFoundError, pa.ArrowInvalid):  # not there, or still being written
            return False

    def samples() -> Iterator[dict]:
        for i in range(5):
            assert finished() == (i >= 2)  # the first shard is complete before the third sample is read
            yield make_sample(i, [])

    export_dataset(samples(), tmp_path, make_info(), shard_rows=2)
    assert len(list((tmp_path / "dataset/data/grounding").glob("*.parquet"))) == 3


def test_a_shard_is_written_a_row_group_at_a_time(tmp_path: Path) -> None:
    """Memory holds a row group (datasets' 100 rows for image features), not the whole shard."""
    shard = tmp_path / ".dataset.tmp/data/grounding/train-00000.parquet"

    def samples() -> Iterator[dict]:
        for i in range(250):
            if i in (0, 150):  # the first 100 rows are in the open shard's file before the 151st is read
                assert (shard.exists() and shard.stat().st_size > 1000) == (i == 150)
            yield make_sample(i, [])

    dataset = export_dataset(samples(), tmp_path, make_info(), shard_rows=1000)
    [shard] = (dataset / "data/grounding").glob("*.parquet")
    groups = pq.ParquetFile(shard).metadata
    assert [groups.row_group(g).num_rows for g in range(groups.num_row_groups)] == [100, 100, 50]


def test_shard_bytes_bound_rows_per_shard(tmp_path: Path) -> None:
    dataset = export_dataset([make_sample(i, []) for i in range(3)], tmp_path, make_info(), shard_bytes=1)
    files = sorted((dataset / "data/grounding").glob("*.parquet"))
    assert [pq.read_metadata(f).num_rows for f in files] == [1, 1, 1]


def test_failed_export_keeps_the_old_dataset(tmp_path: Path) -> None:
    old = export_dataset([make_sample(0, [])], tmp_path, make_info())
    before = folder_digest(old)

    def broken() -> Iterator[dict]:
        yield make_sample(1, [])
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError, match="killed"):
        export_dataset(broken(), tmp_path, make_info(), shard_rows=1)
    assert folder_digest(old) == before
    new = export_dataset([make_sample(2, []), make_sample(3, [])], tmp_path, make_info())
    assert datasets.load_dataset(str(new), "grounding", split="train")["id"] == ["img0002", "img0003"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_swap_cut_between_renames_is_recovered(tmp_path: Path) -> None:
    old = export_dataset([make_sample(0, [])], tmp_path, make_info())
    before = folder_digest(old)
    old.rename(tmp_path / ".dataset.old")  # as if killed after the first rename of the swap

    def killed() -> Iterator[dict]:
        raise KeyboardInterrupt
        yield

    with pytest.raises(KeyboardInterrupt):
        export_dataset(killed(), tmp_path, make_info())
    assert folder_digest(tmp_path / "dataset") == before


def loading_code(card: str) -> str:
    """The card's python block (the loading code)."""
    return card.split("```python\n", 1)[1].split("```", 1)[0]


@pytest.mark.parametrize("folder", ["out", 'my "data" \\ été'], ids=["plain", "quotes-backslash-unicode"])
def test_card_loading_code_runs_on_the_local_folder_without_a_repo_id(tmp_path: Path, folder: str) -> None:
    """Without a repo id the card's loading code names the dataset's own folder: run verbatim, it loads both
    configs and decodes a mask; pointed at a repo id later (push), every loading call names the repo."""
    from syngen.export import set_repo_id

    dataset = export_dataset(SAMPLES[:1], tmp_path / folder, make_info())
    code = loading_code(DatasetCard.load(dataset / "README.md").text)
    assert "<user>" not in code
    scope: dict[str, Any] = {}
    exec(code, scope)  # noqa: S102 (the card's own code, on a folder this test wrote)
    assert scope["grounding"].num_rows == 1 and scope["preference"].num_rows == 2
    np.testing.assert_array_equal(scope["mask"].astype(bool), rect_mask(10, 10, 50, 40))
    pushed = loading_code(set_repo_id((dataset / "README.md").read_text(), "me/demo-data"))
    assert pushed.count('("me/demo-data"') == 3 and str(tmp_path) not in pushed


def test_card_loading_code_names_the_repo_id_when_known(tmp_path: Path) -> None:
    dataset = export_dataset([make_sample(0, [])], tmp_path, make_info(repo_id="me/demo-data"))
    code = loading_code(DatasetCard.load(dataset / "README.md").text)
    assert 'grounding = load_dataset("me/demo-data", "grounding", split="train")' in code
    assert str(tmp_path) not in code


@pytest.mark.parametrize(
    ("out_dir", "named"), [(None, "outputs/demo"), ("/data/runs/demo/", "/data/runs/demo")], ids=["default", "set"]
)
def test_card_reproduce_section_names_where_the_rerun_writes(tmp_path: Path, out_dir: str | None, named: str) -> None:
    """The rerun writes where the recipe's output.dir says, else outputs/<name> (from the folder it is run in)."""
    dataset = export_dataset([make_sample(0, [])], tmp_path, make_info(out_dir=out_dir))
    section = DatasetCard.load(dataset / "README.md").text.split("## Reproduce", 1)[1]
    assert f"`{named}/dataset/`" in section and "```bash\nsyngen run recipe.yaml\n```" in section
