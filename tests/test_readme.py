"""The README stays current: its quick start and its recipe reference match the code."""

from pathlib import Path

from syngen.recipe import reference_markdown

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()
CI = (Path(__file__).resolve().parent.parent / ".ci" / "run").read_text()


def test_recipe_reference_matches_the_configs() -> None:
    assert reference_markdown() in README, (
        "regenerate the README's settings tables with syngen.recipe.reference_markdown()"
    )


def test_quick_start_commands_and_ci_agree() -> None:
    commands = [line for line in README.splitlines() if line.startswith("python3 -m venv .venv")]
    assert commands[0].endswith("syngen run recipes/quickstart.yaml")
    steps = commands[1].split(" && ")
    positions = [CI.find(step) for step in steps]
    assert -1 not in positions and positions == sorted(positions), "CI must run the README's test command's steps"
    checks = [CI.find(check) for check in ("ruff check .", "ruff format --check .", "mypy syngen")]
    assert -1 not in checks and max(checks) < CI.find("python -m pytest"), "CI lints and type-checks before the tests"
    assert all("torch==2.13.0" in c for c in commands[:2]), "an unpinned torch pulls CUDA wheels on CPU machines"
