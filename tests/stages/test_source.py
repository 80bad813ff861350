"""The source stage: folders of images, local datasets and parquet, caption files; bad items fail alone."""

from __future__ import annotations

import io
from pathlib import Path

import datasets
import pytest
from PIL import Image

from syngen.sample import Failure
from syngen.stages.base import Context
from syngen.stages.source import Source, SourceConfig
from tests.helpers import draw_shapes


def source(tmp_path: Path, **config) -> Source:
    return Source(SourceConfig(**config), Context(recipe_dir=tmp_path))


def load_all(src: Source, limit: int | None = None) -> list:
    items = list(src.items(limit))
    return list(zip(items, src.process(items), strict=True))


def test_image_folder_is_recursive_sorted_and_filtered(seed_dir: Path, tmp_path: Path) -> None:
    (seed_dir / "notes.txt").write_text("not a seed")
    (seed_dir / "e.WEBP").write_bytes(_encode(draw_shapes(seed=9), "WEBP"))
    loaded = load_all(source(tmp_path, kind="images", path=str(seed_dir)))
    assert [item["source"]["item"] for item, _ in loaded] == ["a.png", "b.jpg", "c.png", "e.WEBP", "sub/d.png"]
    assert all(result["width"] == 128 and result["height"] == 96 for _, result in loaded)
    assert len({item["id"] for item, _ in loaded}) == 5


def test_ids_are_stable_across_instances(seed_dir: Path, tmp_path: Path) -> None:
    first = [i["id"] for i in source(tmp_path, kind="images", path=str(seed_dir)).items()]
    second = [i["id"] for i in source(tmp_path, kind="images", path=str(seed_dir)).items()]
    assert first == second


@pytest.mark.parametrize(
    "content, reason",
    [(b"", "empty file"), (b"hello, I am text", "cannot decode"), (None, "cannot decode")],
    ids=["zero-bytes", "text-named-jpg", "truncated-png"],
)
def test_bad_image_is_a_failure(tmp_path: Path, content: bytes | None, reason: str) -> None:
    folder = tmp_path / "seeds"
    folder.mkdir()
    if content is None:
        content = _encode(draw_shapes(), "PNG")[:60]
    (folder / "bad.jpg").write_bytes(content)
    [(_, result)] = load_all(source(tmp_path, kind="images", path="seeds"))
    assert isinstance(result, Failure) and result.kind == "bad_image" and reason in result.message


def test_limit(seed_dir: Path, tmp_path: Path) -> None:
    assert len(list(source(tmp_path, kind="images", path=str(seed_dir), limit=3).items())) == 3
    assert len(list(source(tmp_path, kind="images", path=str(seed_dir), limit=3).items(limit=1))) == 1


def test_saved_dataset_with_captions(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict(
        {"picture": [draw_shapes(seed=i) for i in range(3)], "text": ["a red box", "a cat", ""]},
        features=datasets.Features({"picture": datasets.Image(), "text": datasets.Value("string")}),
    )
    ds.save_to_disk(str(tmp_path / "ds"))
    loaded = load_all(source(tmp_path, kind="dataset", path="ds", image_column="picture", caption_column="text"))
    assert [item["source"]["item"] for item, _ in loaded] == ["0", "1", "2"]
    assert [result["caption"] for _, result in loaded] == ["a red box", "a cat", ""]
    assert Image.open(io.BytesIO(loaded[0][1]["image"])).size == (128, 96)


def test_parquet_files(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict(
        {"image": [draw_shapes(seed=i) for i in range(2)]}, features=datasets.Features({"image": datasets.Image()})
    )
    ds.to_parquet(str(tmp_path / "part.parquet"))
    loaded = load_all(source(tmp_path, kind="dataset", path="part.parquet"))
    assert [result["width"] for _, result in loaded] == [128, 128]


def test_parquet_with_image_paths_and_a_missing_file(tmp_path: Path) -> None:
    draw_shapes(seed=1).save(tmp_path / "one.png")
    datasets.Dataset.from_dict({"image": ["one.png", "gone.png"]}).to_parquet(str(tmp_path / "rows.parquet"))
    src = source(tmp_path, kind="dataset", path="rows.parquet")
    present, missing = src.items()
    assert src.process([present])[0]["width"] == 128
    with pytest.raises(FileNotFoundError):  # the runner records it as this sample's failure
        src.process([missing])


@pytest.mark.parametrize(
    "name, text, expected",
    [
        ("c.txt", "a red circle\n\n  a dog on grass  \n", ["a red circle", "a dog on grass"]),
        (
            "c.jsonl",
            '{"caption": "a cat"}\n{"caption": ""}\nnot json\n{"other": 1}\n',
            ["a cat", "empty_caption", "bad_json", "bad_json"],
        ),
    ],
    ids=["text-lines", "jsonl-with-bad-lines"],
)
def test_caption_files(tmp_path: Path, name: str, text: str, expected: list[str]) -> None:
    (tmp_path / name).write_text(text)
    loaded = load_all(source(tmp_path, kind="captions", path=name))
    got = [r.kind if isinstance(r, Failure) else r["caption"] for _, r in loaded]
    assert got == expected


def _encode(image: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()
