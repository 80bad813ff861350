"""The `syngen` command line: run, validate, export, inspect, push, models.

Every command's errors derive from :class:`~syngen.errors.SyngenError`; the app catches them once, prints the
message and exits with the error's code (2: bad recipe or arguments, 1: the run failed).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import click
import typer
from rich.console import Console
from rich.table import Table
from typer.core import TyperGroup

from syngen import log
from syngen.errors import SyngenError, UsageError

# syngen shows one progress bar per stage; the libraries' own bars (weights, parquet shards) are noise here.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

console = Console(stderr=True)

DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml"


class _Commands(TyperGroup):
    """The command group; a :class:`SyngenError` from any command becomes its message and exit code."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SyngenError as err:
            console.print(f"[bold red]error:[/] {err}", highlight=False)
            raise typer.Exit(err.exit_code) from None


app = typer.Typer(
    cls=_Commands, add_completion=False, no_args_is_help=True, help="Synthetic grounding and segmentation data."
)


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="Only warnings and errors in the log.")] = False,
) -> None:
    """Synthetic grounding and segmentation data."""
    log.setup(-1 if quiet else verbose)


def _load(recipe: Path) -> Any:  # -> Recipe
    from syngen.recipe import load_recipe

    return load_recipe(recipe)


@app.command()
def run(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML; default: the offline quickstart.")] = DEFAULT_RECIPE,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder; default outputs/<recipe name>.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use at most N seed items.")] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Drop earlier results in the output folder and start over.")
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar per stage.")] = True,
) -> None:
    """Run a recipe (resuming earlier work in the output folder) and export the dataset."""
    from syngen.runner import run as run_recipe

    loaded = _load(recipe)
    out_dir = loaded.out_dir(out)
    report = run_recipe(loaded, out_dir, fresh=fresh, limit=limit, progress=progress)
    print_report(report)
    console.print(f"dataset: {out_dir / 'dataset'}   report: {out_dir / 'run.json'}")
    if loaded.top.output.push_to_hub:
        _push(out_dir, loaded.top.output.push_to_hub, loaded.top.output.private, loaded.top.output.revision)


@app.command()
def validate(recipe: Annotated[Path, typer.Argument(help="Recipe YAML to check.")]) -> None:
    """Check a recipe against the schema without running anything."""
    loaded = _load(recipe)
    console.print(f"{recipe}: ok ({', '.join(loaded.stages)})")


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="A run's output folder.")],
    recipe: Annotated[
        Path | None, typer.Option("--recipe", help="The run's recipe; default: the one run.json names.")
    ] = None,
) -> None:
    """Rewrite OUT/dataset from the stage stores (no model runs; samples not yet computed are left out)."""
    from syngen.export import export_dataset
    from syngen.runner import Runner, card_info
    from syngen.store import StaleStore

    if recipe is None:
        if not (out / "run.json").exists():
            raise UsageError(f"{out}: no run.json saying which recipe made it; pass --recipe")
        recipe = Path(json.loads((out / "run.json").read_text())["recipe_path"])
    loaded = _load(recipe)
    runner = Runner(loaded, out, progress=False)
    try:
        runner.open_stores(drop_stale=False)
    except StaleStore as err:
        raise UsageError(
            f"{err}; run the recipe to bring {out} up to date, or pass the recipe that made it with --recipe"
        ) from None
    path = export_dataset(
        runner.samples(compute=False),
        out,
        card_info(loaded, runner.summary),
        embed_images=loaded.top.output.embed_images,
    )
    console.print(f"dataset: {path}")


@app.command()
def inspect(
    out: Annotated[Path, typer.Argument(help="A run's output folder.")],
    n: Annotated[int, typer.Option("--n", min=1, help="Samples (and preference pairs) on the contact sheets.")] = 16,
) -> None:
    """Print dataset statistics and write a contact sheet (PNG) and an HTML page under OUT/inspect/."""
    from syngen.stats import format_summary, summarize
    from syngen.viz import contact_sheet

    if not (out / "dataset").exists():
        raise UsageError(f"{out}: no dataset folder; run a recipe first")
    Console().print(format_summary(summarize(out)))
    png, html = contact_sheet(out, n)
    console.print(f"contact sheet: {png}\nhtml: {html}")


def _push(out: Path, repo_id: str, private: bool, revision: str | None) -> None:
    from syngen.push import push_dataset

    url = push_dataset(out / "dataset", repo_id, private=private, revision=revision)
    console.print(f"pushed: {url}")


@app.command()
def push(
    out: Annotated[Path, typer.Argument(help="A run's output folder.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="Hub dataset repo (org/name).")],
    private: Annotated[bool, typer.Option("--private", help="Create the repo as private.")] = False,
    revision: Annotated[
        str | None, typer.Option("--revision", help="Branch to push to (created when missing).")
    ] = None,
) -> None:
    """Upload OUT/dataset to the Hub; the token comes from HF_TOKEN or `hf auth login`."""
    _push(out, repo_id, private, revision)


@app.command()
def models(build: Annotated[bool, typer.Option("--build", help="Build (and cache) every tiny twin.")] = False) -> None:
    """List model backends (with their roles) and tiny twins."""
    from syngen.models import BACKENDS
    from syngen.models.loading import build_tiny
    from syngen.models.twins import TINY

    table = Table("tiny twin", "backend", *(["cached at"] if build else []))
    for name, twin in TINY.items():
        table.add_row(f"tiny:{name}", twin.backend or "(trainer only)", *([str(build_tiny(name))] if build else []))
    Console().print(table)
    Console().print("backends: " + ", ".join(f"{name} ({spec.role})" for name, spec in BACKENDS.items()))


def print_report(report: dict[str, Any]) -> None:
    """The run report as a table on the terminal."""
    table = Table(title=f"run {report['recipe']} on {report['device']} ({report['total_s']:.1f} s)")
    for col in ("stage", "in", "out", "fail", "new", "wall s", "loads", "load s", "model s", "it/s", "peak MB"):
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for name, s in report["stages"].items():
        table.add_row(
            name,
            str(s["items_in"]),
            str(s["items_out"]),
            str(s["failed"]),
            str(s["computed"]),
            f"{s['wall_s']:.2f}",
            str(s.get("loads", 0)),
            f"{s['load_s']:.2f}",
            f"{s['model_s']:.2f}",
            f"{s['items_per_s']:.1f}",
            f"{s['peak_mem_mb']:.0f}",
        )
    out = Console(stderr=True)
    (out if out.is_terminal else Console(stderr=True, width=120)).print(table)
    if report.get("model_loads"):
        console.print("model loads: " + ", ".join(f"{m} x{n}" for m, n in report["model_loads"].items()))
    failures = {name: s["failures"] for name, s in report["stages"].items() if s["failures"]}
    if failures:
        console.print("failures: " + json.dumps(failures))


if __name__ == "__main__":
    app()
