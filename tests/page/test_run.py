"""The run page, read as HTML: self-contained, the run report, statistics and failures tables with the run's
counts, the plots, samples and pairs with the attributes the filters use; `syngen inspect` writes it."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.page import write_page
from tests.page.fixtures import FAILURES, IMAGES, PAIRS, RUN, make_run
from tests.page.tables import parse, with_class


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_run(tmp_path_factory.mktemp("out"))


@pytest.fixture(scope="module")
def html(out: Path) -> str:
    return write_page(out, 16).read_text()


def test_self_contained(html: str) -> None:
    """Nothing is fetched: no external script, style, image or font; every image is inline."""
    assert not re.search(r"<(?:script|link|img|iframe)[^>]+(?:src|href)=(?!['\"]?(?:data:|#))", html)
    assert not re.search(r"(?:src|href)=['\"]?https?:|url\((?!#)|@import", html)  # url(#id): an SVG's own clip path
    assert html.count("<svg") == 5 and html.count("data:image/jpeg;base64,") == (IMAGES - 1) + 1 + sum(PAIRS.values())


def test_run_report_per_stage(html: str) -> None:
    rows = parse(html).tables["stages"]
    assert rows[0][:4] == ["stage", "in", "out", "failed"]
    found = {row[0]: row[1:4] for row in rows[1:]}
    expected = {name: [str(s["items_in"]), str(s["items_out"]), str(s["failed"])] for name, s in RUN["stages"].items()}
    assert found == expected
    assert parse(html).tables["model-loads"][1:] == [["tiny:grounder", "1"], ["tiny:segmenter", "1"]]
    assert parse(html).tables["filters"][1:] == [["ground", "small_box", "2"], ["segment", "mask_score", "4"]]


def test_statistics_table(html: str) -> None:
    rows = dict(parse(html).tables["statistics-table"][1:])
    assert rows["images"] == str(IMAGES) and rows["regions"] == str(IMAGES - 1)
    assert rows["preference pairs"] == str(sum(PAIRS.values()))
    assert rows["pairs (boundary)"] == "4" and rows["pairs (semantic)"] == "4"
    scores = {row[0]: row[1:] for row in parse(html).tables["scores"][1:]}
    assert scores["pair IoU (boundary)"][:2] == ["4", "0.500"] and scores["pair IoU (semantic)"][:2] == ["4", "0.000"]


def test_failures_by_reason_with_examples(html: str) -> None:
    rows = parse(html).tables["failures"][1:]
    assert [row[:3] for row in rows] == [["ground", "no_phrases", "3"], ["segment", "timeout", "1"],
                                         ["negatives", "ValueError", "1"]]  # fmt: skip
    assert rows[0][3] == "seed0.png, seed1.png, seed2.png" and rows[0][4] == "no_phrases on seed0.png"
    reasons = [attrs["value"] for tag, attrs in parse(html).elements if tag == "option"]
    assert reasons == ["", "ground/no_phrases", "segment/timeout", "negatives/ValueError"]
    assert f"{len(FAILURES)} failed samples" in html


def test_samples_and_pairs_carry_what_the_filters_read(html: str) -> None:
    page = parse(html)
    assert len(with_class(page, "figure", "sample")) == IMAGES
    pairs = with_class(page, "figure", "pair")
    assert (
        sorted((p["data-kind"], p["data-iou"]) for p in pairs)
        == [("boundary", "0.500000")] * 4 + [("semantic", "0.000000")] * 4
    )
    assert "a &lt;b&gt;bold&lt;/b&gt; &amp; caption" in html and "<b>bold</b>" not in html
    assert "chosen only 600, rejected only 0, both 600" in html  # boundary: the top half of a 40 x 30 mask


@pytest.mark.parametrize(("n", "samples", "pairs"), [(1, 1, 1), (3, 3, 3), (16, IMAGES, 8)], ids=["1", "3", "16"])
def test_n_limits_what_is_drawn(out: Path, n: int, samples: int, pairs: int, tmp_path: Path) -> None:
    page = parse(write_page(out, n).read_text())
    assert (len(with_class(page, "figure", "sample")), len(with_class(page, "figure", "pair"))) == (samples, pairs)
    assert dict(page.tables["statistics-table"][1:])["images"] == str(IMAGES)  # statistics cover every row


def test_cli_prints_statistics_and_writes_page_and_sheets(out: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(out), "--n", "2"])
    assert result.exit_code == 0, result.output
    assert (out / "inspect/index.html").is_file() and (out / "inspect/contact_sheet.png").is_file()
    assert "page:" in result.output and "regions per image" in result.output


def test_cli_on_a_folder_with_nothing_to_inspect(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["inspect", str(tmp_path)])
    assert result.exit_code == 2 and "no dataset folder and no metrics.jsonl" in " ".join(result.output.split())


def test_a_dataset_without_run_report_or_pairs(tmp_path: Path) -> None:
    from syngen.export import export_dataset
    from tests.export.test_export import make_info, make_sample

    export_dataset([make_sample(0, [])], tmp_path, make_info())
    html = write_page(tmp_path).read_text()
    assert "no run.json in this folder" in html and "no pairs" in html and "no sample failed" in html
