"""The source stage: folders of images, local datasets and parquet, caption files; bad items fail alone."""

from __future__ import annotations

import io
import os
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
        ("c.txt", "a red circle\n\n  a dog on grass  \n", ["a red circle", "empty_caption", "a dog on grass"]),
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


def _encode(image: Image.Image, fmt: str, **save) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt, **save)
    return buf.getvalue()


RED, BLUE = (255, 0, 0), (0, 0, 255)


def _frames(fmt: str) -> bytes:
    """Two frames (red, then blue) in an animated/multi-page format."""
    red, blue = Image.new("RGB", (20, 10), RED), Image.new("RGB", (20, 10), BLUE)
    return _encode(red, fmt, save_all=True, append_images=[blue])


def _exif_rotated() -> bytes:
    """A 40x20 JPEG, red on its left half, whose EXIF orientation 6 says: rotate 90 degrees clockwise to view."""
    img = Image.new("RGB", (40, 20), BLUE)
    img.paste(RED, (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    return _encode(img, "JPEG", exif=exif, quality=95)


def _palette_with_transparency() -> bytes:
    img = Image.new("P", (8, 8), 0)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.paste(1, (0, 0, 4, 8))
    return _encode(img, "PNG", transparency=0)  # index 0 (black) is transparent: shows as white


@pytest.mark.parametrize(
    "name, data, size, pixel",
    [
        pytest.param("a.gif", _frames("GIF"), (20, 10), RED, id="gif-first-frame"),
        pytest.param("a.bmp", _encode(Image.new("RGB", (5, 3), RED), "BMP"), (5, 3), RED, id="bmp"),
        pytest.param("a.tif", _frames("TIFF"), (20, 10), RED, id="tiff-multipage-first-page"),
        pytest.param(
            "a16.tiff", _encode(Image.new("I;16", (4, 4), 0x8000), "TIFF"), (4, 4), (128, 128, 128), id="tiff-16-bit"
        ),
        pytest.param(
            "a16.png", _encode(Image.new("I;16", (4, 4), 0xFFFF), "PNG"), (4, 4), (255, 255, 255), id="png-16-bit"
        ),
        pytest.param("cmyk.jpg", _encode(Image.new("CMYK", (6, 6), (0, 255, 255, 0)), "JPEG"), (6, 6), RED, id="cmyk"),
        pytest.param("p.png", _palette_with_transparency(), (8, 8), RED, id="palette-transparency"),
        pytest.param("la.png", _encode(Image.new("LA", (3, 3), (0, 0)), "PNG"), (3, 3), (255, 255, 255), id="alpha"),
        pytest.param("g.png", _encode(Image.new("L", (7, 5), 200), "PNG"), (7, 5), (200, 200, 200), id="grayscale"),
        pytest.param("rot.jpg", _exif_rotated(), (20, 40), RED, id="exif-rotated-upright"),
        pytest.param("one.png", _encode(Image.new("RGB", (1, 1), RED), "PNG"), (1, 1), RED, id="1x1"),
        pytest.param("wide.png", _encode(Image.new("RGB", (4000, 1), RED), "PNG"), (4000, 1), RED, id="4000x1"),
        pytest.param(
            "tall.webp",
            _encode(Image.new("RGB", (1, 3000), RED), "WEBP", lossless=True),
            (1, 3000),
            RED,
            id="1x3000-webp",
        ),
        pytest.param("a.ppm", _encode(Image.new("RGB", (3, 3), RED), "PPM"), (3, 3), RED, id="ppm"),
        pytest.param("a.tga", _encode(Image.new("RGB", (3, 3), RED), "TGA"), (3, 3), RED, id="tga"),
        pytest.param("a.ico", _encode(Image.new("RGB", (16, 16), RED), "ICO"), (16, 16), RED, id="ico"),
        pytest.param("no-extension", _encode(Image.new("RGB", (3, 2), RED), "PNG"), (3, 2), RED, id="png-no-extension"),
        pytest.param("scan.dat", _encode(Image.new("RGB", (3, 2), RED), "BMP"), (3, 2), RED, id="bmp-as-dat"),
        pytest.param(
            "é ü 图 space.jpg",
            _encode(Image.new("RGB", (9, 9), RED), "JPEG"),
            (9, 9),
            RED,
            id="non-ascii-and-space-name",
        ),
    ],
)
def test_every_image_format_is_a_seed(tmp_path: Path, name: str, data: bytes, size: tuple, pixel: tuple) -> None:
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / name).write_bytes(data)
    src = source(tmp_path, kind="images", path="seeds")
    [(item, result)] = load_all(src)
    assert item["source"]["item"] == name and src.skipped == {}
    assert not isinstance(result, Failure), result
    assert (result["width"], result["height"]) == size
    image = Image.open(io.BytesIO(result["image"]))
    assert image.size == size and image.convert("RGB").getpixel((0, 0)) == pytest.approx(pixel, abs=8)


def test_plain_jpeg_and_png_keep_their_bytes(seed_dir: Path, tmp_path: Path) -> None:
    for item, result in load_all(source(tmp_path, kind="images", path=str(seed_dir))):
        assert result["image"] == (seed_dir / item["source"]["item"]).read_bytes()


def test_files_that_are_not_images_are_listed_with_a_reason(seed_dir: Path, tmp_path: Path) -> None:
    (seed_dir / "notes.txt").write_text("not a seed")
    (seed_dir / "dangling.png").symlink_to(seed_dir / "gone.png")
    (seed_dir / "loop1").symlink_to(seed_dir / "loop2")
    (seed_dir / "loop2").symlink_to(seed_dir / "loop1")
    (seed_dir / "sub" / "up").symlink_to(seed_dir, target_is_directory=True)  # a folder link back up
    (seed_dir / "linked.png").symlink_to(seed_dir / "a.png")  # a link to an image is a seed
    src = source(tmp_path, kind="images", path=str(seed_dir))
    items = [item["source"]["item"] for item in src.items()]
    assert items == ["a.png", "b.jpg", "c.png", "linked.png", "sub/d.png"]
    assert src.skipped["notes.txt"] == "not an image (Pillow cannot identify it)"
    assert src.skipped["dangling.png"] == "unreadable: No such file or directory"
    assert src.skipped["loop1"] == src.skipped["loop2"] == "unreadable: Too many levels of symbolic links"
    assert src.skipped["sub/up"].startswith("symlink loop")


def test_decompression_bomb_and_truncated_file_are_failures(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "seeds").mkdir()
    (tmp_path / "seeds" / "bomb.png").write_bytes(_encode(Image.new("L", (300, 300)), "PNG"))
    (tmp_path / "seeds" / "cut.jpg").write_bytes(_encode(draw_shapes(), "JPEG")[:300])
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 // 3)  # 3x the limit: an error; over 1x: a warning
    bomb, cut = (r for _, r in load_all(source(tmp_path, kind="images", path="seeds")))
    assert isinstance(bomb, Failure) and bomb.message.startswith("decompression bomb")
    assert isinstance(cut, Failure) and "truncated" in cut.message.lower()
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 300 * 300 - 1)
    [(_, warned)] = load_all(source(tmp_path, kind="images", path="seeds", limit=1))
    assert isinstance(warned, Failure) and warned.message.startswith("decompression bomb")


def test_caption_lines_that_cannot_be_used_name_their_line(tmp_path: Path) -> None:
    lines = [
        b'{"caption": "a cat"}',
        b"",
        b"{not json",
        b'{"text": "no caption field"}',
        b'{"caption": "caf\xe9 latte"}',
        b'["a list"]',
        b'{"caption": "' + b"x" * 100_000 + b'"}',
    ]
    (tmp_path / "c.jsonl").write_bytes(b"\xef\xbb\xbf" + b"\r\n".join(lines))  # with a BOM and CRLF endings
    results = [r for _, r in load_all(source(tmp_path, kind="captions", path="c.jsonl"))]
    assert results[0] == {"caption": "a cat"} and len(results[6]["caption"]) == 100_000
    expected = [
        ("empty_caption", "line 2 is blank"),
        ("bad_json", "line 3: not JSON: Expecting property name"),
        ("bad_json", "line 4: no 'caption' field in '{\"text\": "),
        ("bad_encoding", "line 5: not UTF-8 (byte 0xe9 at column 17)"),
        ("bad_json", "line 6: no 'caption' field in '[\"a list\"]'"),
    ]
    assert [(r.kind, r.message[: len(m)]) for r, (_, m) in zip(results[1:6], expected, strict=True)] == expected


@pytest.mark.parametrize(
    "kind, make, expected",
    [
        pytest.param("captions", lambda p: p.mkdir(), "is a folder, but kind: captions", id="captions-folder"),
        pytest.param("images", lambda p: p.write_text("x"), "is a file, but kind: images", id="images-file"),
        pytest.param(
            "dataset",
            lambda p: p.mkdir() or draw_shapes().save(p / "a.png"),
            "neither a dataset saved with save_to_disk nor parquet",
            id="dataset-image-folder",
        ),
    ],
)
def test_a_path_of_the_wrong_kind_is_refused(tmp_path: Path, kind: str, make, expected: str) -> None:
    make(tmp_path / "in")
    with pytest.raises(ValueError, match=expected):
        source(tmp_path, kind=kind, path="in")


def test_a_split_the_dataset_lacks_is_refused(tmp_path: Path) -> None:
    ds = datasets.Dataset.from_dict({"image": [draw_shapes()]}, features=datasets.Features({"image": datasets.Image()}))
    datasets.DatasetDict({"train": ds}).save_to_disk(str(tmp_path / "ds"))
    with pytest.raises(ValueError, match="split 'validation' is not in the dataset .* it has train"):
        source(tmp_path, kind="dataset", path="ds", split="validation")


def _name(raw: bytes) -> str:
    return os.fsdecode(raw)  # a name as os.walk gives it: undecodable bytes as surrogate escapes


@pytest.mark.parametrize(
    "raw, item",
    [
        pytest.param(b"caf\xe9.png", "caf\\xe9.png", id="latin-1-name"),
        pytest.param(b"d\xe9j\xe0/x.png", "d\\xe9j\\xe0/x.png", id="latin-1-folder"),
        pytest.param(b"two\nlines.png", "two\\nlines.png", id="newline"),
        pytest.param(b"l" * 251 + b".png", "l" * 251 + ".png", id="255-bytes"),
        pytest.param("café ☃.png".encode(), "café ☃.png", id="utf-8-unchanged"),
    ],
)
def test_any_file_name_is_a_seed_named_in_printable_utf_8(tmp_path: Path, raw: bytes, item: str) -> None:
    path = os.path.join(os.fsencode(tmp_path / "seeds"), raw)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    draw_shapes().save(_name(path), format="PNG")
    [(sample, result)] = load_all(source(tmp_path, kind="images", path="seeds"))
    assert sample["source"]["item"] == item and item.encode("utf-8")  # storable as UTF-8 (parquet, JSON, card)
    assert result["width"] == 128


def test_two_files_whose_printable_names_meet_are_both_accounted_for(tmp_path: Path) -> None:
    (tmp_path / "seeds").mkdir()
    for raw in (b"caf\xe9.png", b"caf\\xe9.png"):  # the second is literally named with a backslash
        draw_shapes().save(_name(os.path.join(os.fsencode(tmp_path / "seeds"), raw)), format="PNG")
    src = source(tmp_path, kind="images", path="seeds")
    assert [i["source"]["item"] for i in src.items()] == ["caf\\xe9.png"]
    assert src.skipped == {"caf\\xe9.png": "another file's name reads the same once made printable"}


def test_fifos_and_devices_are_skipped_with_a_reason(seed_dir: Path, tmp_path: Path) -> None:
    os.mkfifo(seed_dir / "pipe.png")
    (seed_dir / "null.png").symlink_to("/dev/null")
    src = source(tmp_path, kind="images", path=str(seed_dir))
    assert [i["source"]["item"] for i in src.items()] == ["a.png", "b.jpg", "c.png", "sub/d.png"]
    assert src.skipped == {"pipe.png": "not a regular file", "null.png": "not a regular file"}


@pytest.mark.parametrize(
    "value, inside",
    [
        pytest.param("one.png", True, id="relative"),
        pytest.param("sub/../one.png", True, id="dots-staying-inside"),
        pytest.param("{data}/one.png", True, id="absolute-inside"),
        pytest.param("../secret.png", False, id="dots-leaving"),
        pytest.param("{tmp}/secret.png", False, id="absolute-outside"),
        pytest.param("link.png", False, id="link-leading-outside"),
    ],
)
def test_dataset_image_paths_stay_inside_the_dataset_folder(tmp_path: Path, value: str, inside: bool) -> None:
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    draw_shapes(seed=1).save(data / "one.png")
    draw_shapes(seed=2).save(tmp_path / "secret.png")
    (data / "link.png").symlink_to(tmp_path / "secret.png")
    rows = [value.format(data=data, tmp=tmp_path)]
    datasets.Dataset.from_dict({"image": rows}).to_parquet(str(data / "rows.parquet"))
    [(_, result)] = load_all(source(tmp_path, kind="dataset", path="data/rows.parquet"))
    if inside:
        assert result["width"] == 128
    else:
        assert isinstance(result, Failure) and result.kind == "outside_dataset", result
        assert f"is outside the dataset's folder {data}" in result.message
