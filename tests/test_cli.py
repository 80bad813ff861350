"""The command line on bad paths, locks and unfinished runs: one paragraph, a non-zero exit, never a traceback."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from filelock import FileLock
from typer.testing import CliRunner

from syngen import stages as registry
from syngen.cli import app
from tests import fault_stages


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, cls in fault_stages.FAKES.items():
        monkeypatch.setitem(registry.STAGES, name, f"tests.fault_stages:{cls.__name__}")


def syngen(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, " ".join(result.output.split())


def with_source(tmp_path: Path, **source: str) -> Path:
    path = fault_stages.write_recipe(tmp_path, 2)
    data = yaml.safe_load(path.read_text())
    data["source"] |= source
    if source.get("kind") == "captions":
        del data["stages"]["caption"]
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "setup, code, expected",
    [
        pytest.param(
            lambda t: (t / "out").write_text("a file"), 1, "out: it exists and is not a folder", id="output-is-a-file"
        ),
        pytest.param(
            lambda t: with_source(t, kind="captions", path="seeds"), 2, "kind: captions reads one", id="captions-folder"
        ),
        pytest.param(
            lambda t: with_source(t, kind="dataset", path="seeds"), 2, "neither a dataset saved", id="dataset-images"
        ),
        pytest.param(
            lambda t: (t / "recipe.yaml").write_bytes(b"name: caf\xe9\n"), 2, "not UTF-8 text", id="recipe-not-utf-8"
        ),
        pytest.param(
            lambda t: (t / "recipe.yaml").unlink() or (t / "recipe.yaml").mkdir(),
            2,
            "no such recipe file",
            id="recipe-is-a-folder",
        ),
    ],
)
def test_bad_paths_end_with_one_paragraph(tmp_path: Path, setup, code: int, expected: str) -> None:
    fault_stages.write_recipe(tmp_path, 2)
    setup(tmp_path)
    exit_code, output = syngen("run", tmp_path / "recipe.yaml", "--out", tmp_path / "out", "--no-progress")
    assert exit_code == code and expected in output, output
    assert output.startswith("error:") and str(tmp_path) in output


def test_skipped_files_are_reported(tmp_path: Path) -> None:
    recipe = fault_stages.write_recipe(tmp_path, 1)
    (tmp_path / "seeds" / "notes.txt").write_text("not an image")
    exit_code, output = syngen("run", recipe, "--out", tmp_path / "out", "--no-progress")
    assert exit_code == 0 and "skipped 1 files that are not seed images (notes.txt: not an image" in output


def test_no_seed_item_exits_1_listing_what_was_skipped(tmp_path: Path) -> None:
    recipe = fault_stages.write_recipe(tmp_path, 0)
    (tmp_path / "seeds" / "notes.txt").write_text("not an image")
    exit_code, output = syngen("run", recipe, "--out", tmp_path / "out", "--no-progress")
    assert exit_code == 1 and "no seed items (skipped 1 files: notes.txt: not an image" in output, output
    assert json.loads((tmp_path / "out" / "run.json").read_text())["skipped"] == {
        "notes.txt": "not an image (Pillow cannot identify it)"
    }


def test_export_shares_the_run_lock(tmp_path: Path) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 2), tmp_path / "out"
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0
    with FileLock(str(out / ".lock")):
        exit_code, output = syngen("export", out)
    assert exit_code == 1 and "another syngen run is writing to" in output


def test_export_of_an_unfinished_run_refuses_unless_partial(tmp_path: Path) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 4, wave_size=2), tmp_path / "out"
    assert syngen("run", recipe, "--out", out, "--no-progress", "--limit", "4")[0] == 0
    before = (out / "dataset" / "README.md").read_text()
    (tmp_path / "seeds" / "seed 09.png").write_bytes((tmp_path / "seeds" / "seed 00.png").read_bytes())
    exit_code, output = syngen("export", out, "--recipe", recipe)  # seed 09 is new: not computed yet
    assert exit_code == 1, output
    assert "the run is unfinished: 8 samples are complete and 1 inputs of the source stage" in output
    assert (out / "dataset" / "README.md").read_text() == before
    exit_code, output = syngen("export", out, "--recipe", recipe, "--partial")
    assert exit_code == 0 and "(partial)" in output
    assert "**Partial export:**" in (out / "dataset" / "README.md").read_text()
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0  # finishing rewrites a complete card
    assert "Partial export" not in (out / "dataset" / "README.md").read_text()


def test_a_damaged_fingerprint_redoes_only_that_stage_without_a_traceback(tmp_path: Path) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 2), tmp_path / "out"
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0
    (out / "stages" / "segment" / "fingerprint.json").write_text('{"fingerprint": ')
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert [name for name, s in stages.items() if s["computed"]] == ["segment"]  # the later stages still match


def test_models_lists_sam3_backend_with_both_roles_and_its_twin() -> None:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "tiny:sam3" in result.output
    assert "sam3 (grounder, segmenter)" in result.output
