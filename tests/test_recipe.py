"""Recipe validation: every bad recipe fails at once, naming the file, the field and what was expected."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from syngen.recipe import RecipeError, load_recipe

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, recipe: dict) -> Path:
    (tmp_path / "seeds").mkdir(exist_ok=True)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def base() -> dict:
    return {
        "name": "t",
        "source": {"kind": "images", "path": "seeds"},
        "stages": {"caption": {"model": "tiny:captioner-blip"}},
    }


@pytest.mark.parametrize("name", ["quickstart.yaml", "synground.yaml"])
def test_bundled_recipes_validate(tmp_path: Path, name: str) -> None:
    data = yaml.safe_load((REPO / "recipes" / name).read_text())
    data["source"]["path"] = str(REPO / "recipes" / "seeds" / "quickstart")  # synground's is the user's folder
    recipe = load_recipe(write(tmp_path, data))
    assert list(recipe.stages) == [
        "source",
        "caption",
        "synthesize",
        "phrases",
        "ground",
        "segment",
        "negatives",
        "views",
    ]


@pytest.mark.parametrize(
    "change, field, expected",
    [
        (lambda r: r.update(nmae="x"), "nmae", "did you mean 'name'"),
        (lambda r: r["stages"]["caption"].update(batch_sz=2), "stages.caption.batch_sz", "did you mean 'batch_size'"),
        (lambda r: r["stages"].update(captoin={}), "stages.captoin", "did you mean 'caption'"),
        (
            lambda r: r["stages"]["caption"].update(batch_size=0),
            "stages.caption.batch_size",
            "greater than or equal to 1",
        ),
        (lambda r: r["stages"]["caption"].update(batch_size="many"), "stages.caption.batch_size", "valid integer"),
        (lambda r: r["source"].update(kind="videos"), "source.kind", "'images', 'dataset' or 'captions'"),
        (lambda r: r["source"].update(path="nowhere"), "source.path", "expected an existing file or folder"),
        (lambda r: r["stages"]["caption"].update(prompt="missing.txt"), "stages.caption.prompt", "existing file"),
        (
            lambda r: r["stages"].update(ground={"box_threshold": 1.5}),
            "stages.ground.box_threshold",
            "less than or equal to 1",
        ),
        (
            lambda r: r["stages"]["caption"].update(model={"id": "x/y", "backend": "nope"}),
            "stages.caption.model",
            "unknown backend",
        ),
        (lambda r: r["stages"]["caption"].update(model="tiny:nothing"), "stages.caption.model", "unknown tiny twin"),
        (
            lambda r: r["stages"]["caption"].update(model="tiny:segmenter"),
            "stages.caption.model",
            "backend 'sam', a segmenter; the caption stage needs a captioner (backends: blip, llava)",
        ),
        (
            lambda r: r["stages"]["caption"].update(model={"id": "org/some-llm", "backend": "causal-lm"}),
            "stages.caption.model",
            "backend 'causal-lm', a llm; the caption stage needs a captioner",
        ),
        (lambda r: r["runtime"].update(wave_size=0), "runtime.wave_size", "greater than or equal to 1"),
        (lambda r: r.pop("name"), "name", "Field required"),
        (lambda r: r["stages"].update(phrases={}) or r["stages"].pop("caption"), "stages.phrases", "needs caption"),
    ],
    ids=[
        "unknown-top-key",
        "unknown-stage-key",
        "unknown-stage",
        "batch-size-zero",
        "wrong-type",
        "bad-source-kind",
        "missing-source-folder",
        "missing-prompt-file",
        "threshold-above-one",
        "unknown-backend",
        "unknown-tiny-twin",
        "twin-of-another-role",
        "backend-of-another-role",
        "wave-size-zero",
        "missing-name",
        "stage-input-missing",
    ],
)
def test_bad_recipe_names_file_field_and_expectation(tmp_path: Path, change, field: str, expected: str) -> None:
    recipe = base() | {"runtime": {}}
    change(recipe)
    path = write(tmp_path, recipe)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {field}"), message
    assert expected in message, message


def test_prompt_without_placeholder(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("List the phrases.")
    recipe = base()
    recipe["stages"]["phrases"] = {"prompt": "p.txt"}
    with pytest.raises(RecipeError, match=r"stages\.phrases: .*p\.txt has no \{caption\} placeholder"):
        load_recipe(write(tmp_path, recipe))


def test_not_yaml_mapping(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(RecipeError, match="expected a mapping"):
        load_recipe(path)


def test_negatives_share_the_segment_model(tmp_path: Path) -> None:
    recipe = base()
    recipe["stages"] |= {"phrases": {}, "ground": {}, "segment": {"model": "tiny:segmenter"}, "negatives": {}}
    loaded = load_recipe(write(tmp_path, recipe))
    assert loaded.stages["negatives"].model == loaded.stages["segment"].model


def test_cli_validate_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from syngen.cli import app

    recipe = base()
    recipe["stages"]["caption"]["batch_size"] = 0
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, recipe))])
    assert result.exit_code == 2
    assert "stages.caption.batch_size" in result.output
    assert "Traceback" not in result.output
