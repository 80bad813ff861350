"""The `syngen` command line: run, validate, export, inspect, push, models."""

from __future__ import annotations

import json
import os
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

# syngen shows one progress bar per stage; the libraries' own bars (weights, parquet shards) are noise here.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Synthetic grounding and segmentation data.")
console = Console(stderr=True)


def _fail(message: str) -> None:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def _load(recipe: Path):  # -> Recipe
    from syngen.recipe import RecipeError, load_recipe

    try:
        return load_recipe(recipe)
    except RecipeError as err:
        _fail(str(err))


@app.command()
def run(
    recipe: Path | None = typer.Argument(
        None, help="Recipe YAML; default: the offline quickstart bundled with syngen."
    ),
    out: Path | None = typer.Option(None, "--out", help="Output folder; default outputs/<recipe name>."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use at most N seed items."),
    fresh: bool = typer.Option(False, "--fresh", help="Drop earlier results in the output folder and start over."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per stage."),
    retry_failed: bool = typer.Option(
        False, "--retry-failed", help="Compute the samples that failed before again (and nothing else)."
    ),
    shard: str | None = typer.Option(
        None,
        "--shard",
        help="Run only share K of N (K/N, from 0) of the seed items; default: the launcher's RANK/WORLD_SIZE or "
        "Slurm array ids, else the whole recipe. Shards share OUT; `syngen export OUT` merges them.",
    ),
    ray: str | None = typer.Option(
        None,
        "--ray",
        metavar="ADDRESS",
        help="Run the shards on a Ray cluster: `local` starts one on this machine, `auto` joins the one "
        "`ray start` started, or host:port. Needs `pip install syngen[ray]`.",
    ),
    workers: int = typer.Option(2, "--workers", min=1, help="--ray: worker actors (each keeps its models loaded)."),
    gpus_per_worker: float = typer.Option(0.0, "--gpus-per-worker", min=0, help="--ray: GPUs per worker."),
    shards: int | None = typer.Option(
        None, "--shards", min=1, help="--ray: shards to split the seed items into; default 4 per worker."
    ),
) -> None:
    """Run a recipe (resuming earlier work in the output folder) and export the dataset."""
    from syngen.assets import quickstart_recipe
    from syngen.executors import ShardError, shard_from_env
    from syngen.executors.local import WholeFolderOnly
    from syngen.executors.lock import RunLocked
    from syngen.models.loading import PreflightError

    loaded = _load(recipe or quickstart_recipe())
    out_dir = loaded.out_dir(out)
    try:
        if ray is not None:
            from syngen.executors.ray import run as run_ray

            report = run_ray(
                loaded,
                out_dir,
                address=ray,
                workers=workers,
                gpus_per_worker=gpus_per_worker,
                shards=shards or 4 * workers,
                fresh=fresh,
                limit=limit,
                progress=progress,
                retry_failed=retry_failed,
            )
        else:
            from syngen.executors.local import run as run_local
            from syngen.executors.shard import Shard

            part = Shard.parse(shard) if shard else shard_from_env()
            report = run_local(
                loaded, out_dir, fresh=fresh, limit=limit, progress=progress, shard=part, retry_failed=retry_failed
            )
            if not part.whole:
                print_report(report)
                console.print(f"shard {part} done; once every shard is: syngen export {out_dir}")
                return
    except (PreflightError, RunLocked, ShardError, WholeFolderOnly) as err:
        _fail(str(err))
    print_report(report)
    console.print(f"dataset: {out_dir / 'dataset'}   report: {out_dir / 'run.json'}")
    if loaded.top.output.push_to_hub:
        _push(out_dir, loaded.top.output.push_to_hub, loaded.top.output.private, loaded.top.output.revision)


@app.command()
def validate(recipe: Path = typer.Argument(..., help="Recipe YAML to check.")) -> None:
    """Check a recipe against the schema without running anything."""
    loaded = _load(recipe)
    console.print(f"{recipe}: ok ({', '.join(loaded.stages)})")


@app.command()
def export(
    out: Path = typer.Argument(..., help="A run's output folder."),
    recipe: Path | None = typer.Option(None, "--recipe", help="The run's recipe; default: the one run.json names."),
    repo_id: str | None = typer.Option(
        None, "--repo-id", help="Hub repo the card's loading code names; default: the recipe's output.push_to_hub."
    ),
) -> None:
    """Rewrite OUT/dataset from the stage stores of every shard (no model runs; samples not yet computed are left
    out)."""
    from syngen.executors.local import export as export_stores
    from syngen.executors.local import recipe_path
    from syngen.executors.lock import RunLocked
    from syngen.store import StaleStore

    recipe = recipe or recipe_path(out)
    if recipe is None:
        _fail(f"{out}: no run.json saying which recipe made it; pass --recipe")
    loaded = _load(recipe)
    try:
        path = export_stores(loaded, out, repo_id)
    except RunLocked as err:
        _fail(str(err))
    except StaleStore as err:
        _fail(f"{err}; run the recipe to bring {out} up to date, or pass the recipe that made it with --recipe")
    console.print(f"dataset: {path}")


@app.command()
def inspect(
    out: Path = typer.Argument(..., help="A run's output folder."),
    n: int = typer.Option(16, "--n", min=1, help="Samples (and preference pairs) on the contact sheets."),
) -> None:
    """Print dataset statistics and write a contact sheet (PNG) and an HTML page under OUT/inspect/."""
    from syngen.stats import format_summary, summarize
    from syngen.viz import contact_sheet

    if not (out / "dataset").exists():
        _fail(f"{out}: no dataset folder; run a recipe first")
    Console().print(format_summary(summarize(out)))
    png, html = contact_sheet(out, n)
    console.print(f"contact sheet: {png}\nhtml: {html}")


def _push(out: Path, repo_id: str, private: bool, revision: str | None) -> None:
    from syngen.push import PushError, push_dataset

    try:
        url = push_dataset(out / "dataset", repo_id, private=private, revision=revision)
    except PushError as err:
        _fail(str(err))
    console.print(f"pushed: {url}")


@app.command()
def push(
    out: Path = typer.Argument(..., help="A run's output folder."),
    repo_id: str = typer.Option(..., "--repo-id", help="Hub dataset repo (org/name)."),
    private: bool = typer.Option(False, "--private", help="Create the repo as private."),
    revision: str | None = typer.Option(None, "--revision", help="Branch to push to (created when missing)."),
) -> None:
    """Upload OUT/dataset to the Hub; the token comes from HF_TOKEN or `hf auth login`."""
    _push(out, repo_id, private, revision)


@app.command()
def models(build: bool = typer.Option(False, "--build", help="Build (and cache) every tiny twin.")) -> None:
    """List model backends and tiny twins."""
    from syngen.models import BACKENDS, TINY
    from syngen.models.loading import build_tiny

    table = Table("tiny twin", "backend", *(["cached at"] if build else []))
    for name, (backend, _) in TINY.items():
        table.add_row(f"tiny:{name}", backend, *([str(build_tiny(name))] if build else []))
    Console().print(table)
    Console().print("backends: " + ", ".join(BACKENDS))


def print_report(report: dict) -> None:
    """The run report as a table on the terminal."""
    table = Table(title=f"run {report['recipe']} on {report['device']} ({report['total_s']:.1f} s)")
    for col in ("stage", "in", "out", "fail", "new", "wall s", "load s", "model s", "it/s", "peak MB"):
        table.add_column(col, justify="left" if col == "stage" else "right", no_wrap=True)
    for name, s in report["stages"].items():
        table.add_row(
            name,
            str(s["items_in"]),
            str(s["items_out"]),
            str(s["failed"]),
            str(s["computed"]),
            f"{s['wall_s']:.2f}",
            f"{s['load_s']:.2f}",
            f"{s['model_s']:.2f}",
            f"{s['items_per_s']:.1f}",
            f"{s['peak_mem_mb']:.0f}",
        )
    out = Console(stderr=True)
    (out if out.is_terminal else Console(stderr=True, width=120)).print(table)
    failures = {name: s["failures"] for name, s in report["stages"].items() if s["failures"]}
    if failures:
        console.print("failures: " + json.dumps(failures))


if __name__ == "__main__":
    app()
