"""The README and docs/ stay current: the quick start matches CI, the generated reference tables match the code,
and every relative link (and every docs/ page a docstring cites) points to a file that exists."""

import re
from pathlib import Path

import pytest

from syngen.recipe import reference_markdown

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()
CI = (ROOT / ".ci" / "run").read_text()
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target) and ![alt](target)
CITED = re.compile(r"\bdocs/[\w./-]+\.(?:md|png)(?:#[\w-]+)?")


def test_recipe_reference_matches_the_configs() -> None:
    assert reference_markdown() in (ROOT / "docs" / "recipes.md").read_text(), (
        "regenerate docs/recipes.md's settings tables with syngen.recipe.reference_markdown()"
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


def test_trainer_options_tables_match_the_configs() -> None:
    from syngen.train.cli import reference_markdown as training_reference

    assert training_reference() in (ROOT / "docs" / "training.md").read_text(), (
        "regenerate docs/training.md's trainer options with syngen.train.cli.reference_markdown()"
    )


def test_readme_is_a_front_door() -> None:
    assert len(README.splitlines()) <= 300, "the README is the front door: reference material goes in docs/"


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a markdown page's headings: lower case, punctuation dropped, spaces to hyphens."""
    headings = re.findall(r"(?m)^#+ (.+)$", page.read_text())
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def relative_links(page: Path) -> list[str]:
    """The relative link targets of a page, outside code blocks."""
    text = re.sub(r"(?ms)^```.*?^```", "", page.read_text())
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_relative_links_point_to_files_and_headings_that_exist(page: Path) -> None:
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    assert not broken, f"{page.name} links to what does not exist: {broken}"


def test_docs_cited_in_the_code_exist() -> None:
    cited = {m for f in (ROOT / "syngen").rglob("*.py") for m in CITED.findall(f.read_text())}
    assert any("#" in c for c in cited), "the code cites docs/ pages and their sections (docs/methods.md#mask-dpo)"
    missing = []
    for citation in sorted(cited):
        path, _, anchor = citation.partition("#")
        if not (ROOT / path).exists() or (anchor and anchor not in anchors(ROOT / path)):
            missing.append(citation)
    assert missing == [], "docstrings cite docs that do not exist"


@pytest.mark.parametrize(
    ("page", "expected"),
    [
        ("[a](docs/x.md) [b](https://example.com) ![c](img/d.png#e)", ["docs/x.md", "img/d.png#e"]),
        ("```\n[a](nowhere.md)\n```\n[b](#here)", ["#here"]),
    ],
    ids=["files-and-images-not-urls", "code-blocks-skipped"],
)
def test_relative_links_are_found(tmp_path: Path, page: str, expected: list[str]) -> None:
    (tmp_path / "page.md").write_text(page)
    assert relative_links(tmp_path / "page.md") == expected


def test_anchors_follow_githubs_rule(tmp_path: Path) -> None:
    (tmp_path / "page.md").write_text("# Looking at a run, and publishing it\n## `syngen train sft`\n")
    assert anchors(tmp_path / "page.md") == {"looking-at-a-run-and-publishing-it", "syngen-train-sft"}


def command_rows() -> list[tuple[list[str], list[str]]]:
    """The README's commands table: each row's command path (``["train", "sft"]``) and the options it names."""
    rows = re.findall(r"(?m)^\| `syngen ([^`]+)`", README.split("## Commands", 1)[1])
    parsed = []
    for row in rows:
        for usage in re.split(r"` / `", row):
            words = usage.split()
            path = [w for w in words[:2] if re.fullmatch(r"[a-z]+", w)]
            parsed.append((path, re.findall(r"--[a-z][a-z-]*", usage)))
    return parsed


def test_readme_commands_table_names_real_commands_and_options() -> None:
    import typer

    from syngen.cli import app

    rows = command_rows()
    assert len(rows) >= 12, "the README lists every command"
    root = typer.main.get_command(app)
    for path, options in rows:
        command = root
        ctx = typer.Context(root)
        for name in path:
            assert hasattr(command, "get_command"), f"`syngen {' '.join(path)}`: {name} is not a group"
            found = command.get_command(ctx, name)
            assert found is not None, f"the README names `syngen {' '.join(path)}`, which does not exist"
            command = found
        known = {opt for param in command.params for opt in [*param.opts, *getattr(param, "secondary_opts", [])]}
        assert set(options) <= known, f"`syngen {' '.join(path)}` has no {sorted(set(options) - known)}"
