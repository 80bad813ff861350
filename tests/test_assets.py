"""Bundled files: prompts and the quickstart live inside the package, the repo's top-level paths link to them,
and an installed wheel runs the quickstart from any folder."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

from syngen.assets import assets_dir, quickstart_recipe
from syngen.recipe import load_recipe
from syngen.stages.base import Context

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize(
    ("top_level", "bundled"),
    [
        pytest.param("prompts", "prompts", id="prompts"),
        pytest.param("recipes/quickstart.yaml", "recipes/quickstart.yaml", id="quickstart-recipe"),
        pytest.param("recipes/seeds/quickstart", "recipes/seeds/quickstart", id="quickstart-seeds"),
    ],
)
def test_top_level_examples_are_links_to_the_bundled_files(top_level: str, bundled: str) -> None:
    path = REPO / top_level
    assert path.is_symlink(), f"{top_level} should link to syngen/assets/{bundled}, not be a copy"
    assert path.resolve() == (assets_dir() / bundled).resolve()


def test_bundled_prompts_resolve_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    found = Context(recipe_dir=tmp_path).resolve_path("prompts/phrases.txt")
    assert found == assets_dir() / "prompts" / "phrases.txt" and "{caption}" in found.read_text()


def test_bundled_quickstart_validates_from_any_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    recipe = load_recipe(quickstart_recipe())
    assert recipe.name == "quickstart" and recipe.out_dir() == Path("outputs/quickstart")


@pytest.mark.parametrize(
    "where",
    ["bundled", "repository", "copied", "exported-dataset"],
    ids=["bundled", "repository", "copied-elsewhere", "out-dataset-recipe"],
)
def test_quickstart_finds_its_seeds_and_prompts_wherever_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    """The same relative paths (seeds/quickstart, prompts/...) resolve from the bundled recipe, the repository's
    link to it, a copy in a foreign folder (`cp recipes/quickstart.yaml ~/x.yaml`) and a run's
    OUT/dataset/recipe.yaml, whatever the current folder."""
    copies = {"copied": tmp_path / "home" / "x.yaml", "exported-dataset": tmp_path / "o" / "dataset" / "recipe.yaml"}
    path = {"bundled": quickstart_recipe(), "repository": REPO / "recipes" / "quickstart.yaml"}.get(where)
    if path is None:
        path = copies[where]
        path.parent.mkdir(parents=True)
        shutil.copy(REPO / "recipes" / "quickstart.yaml", path)
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    recipe = load_recipe(path)
    ctx = recipe.context()
    seeds = ctx.resolve_path(recipe.stages["source"].path)
    assert seeds.resolve() == (assets_dir() / "recipes" / "seeds" / "quickstart").resolve()
    assert len(list(seeds.glob("*.png"))) == 6
    prompt = ctx.resolve_path(recipe.stages["phrases"].prompt)
    assert prompt.resolve() == (assets_dir() / "prompts" / "phrases.txt").resolve()


@pytest.mark.slow
def test_wheel_runs_the_quickstart_from_an_empty_folder(tmp_path: Path) -> None:
    """Builds the wheel from a copy of the sources, installs it (no dependencies: the fresh venv sees this
    environment's packages through a .pth file, so nothing is downloaded) and runs `syngen run` with no argument."""
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    shutil.copytree(REPO / "syngen", src / "syngen", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", tmp_path / "dist", src], check=True)
    (wheel,) = (tmp_path / "dist").glob("syngen-*.whl")

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], check=True, capture_output=True
    )
    Path(purelib.stdout.decode().strip(), "_parent_env.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([*pip, "--python", python, "install", "--no-deps", "--no-index", wheel], check=True)

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"HF_HUB_OFFLINE": "1"}
    where = subprocess.run(
        [python, "-c", "import syngen; print(syngen.__file__)"], cwd=empty, env=env, capture_output=True, text=True
    )
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout + where.stderr
    run = subprocess.run(
        [venv / "bin" / "syngen", "run", "--no-progress"], cwd=empty, env=env, capture_output=True, text=True
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = empty / "outputs" / "quickstart"
    report = json.loads((out / "run.json").read_text())
    assert report["stages"]["source"]["items_in"] == 6
    assert report["stages"]["views"]["items_out"] > 0
    assert list((out / "dataset" / "data" / "grounding").glob("*.parquet"))
