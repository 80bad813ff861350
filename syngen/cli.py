"""The `syngen` command line: run, validate, export, inspect, push, models."""

from __future__ import annotations

import errno
import json
import os
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

# syngen shows one progress bar per stage; the libraries' own bars (weights, parquet shards) are noise here.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

app = typer.Typer(add_completion=False, no_args_is_help=True, help="Synthetic grounding and segmentation data.")
console = Console(stderr=True)

DEFAULT_RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "quickstart.yaml"


def _fail(message: str, code: int = 2) -> NoReturn:
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(code)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the run is, like Ctrl-C's KeyboardInterrupt."""


def _terminate(signum: int, frame: Any) -> None:
    raise Terminated()


@contextmanager
def _reported(out: Path, resume: str) -> Iterator[None]:
    """Ends a command whose output folder is ``out`` with one paragraph (no traceback) on a filesystem error,
    and with one line on Ctrl-C or SIGTERM saying what was kept and how to resume (the command ``resume``)."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except KeyboardInterrupt as err:
        name, code = ("SIGTERM", 143) if isinstance(err, Terminated) else ("Ctrl-C", 130)
        parts = len(list(out.glob("stages/*/part-*.parquet")))
        console.print(
            f"stopped by {name}: every finished batch is kept ({parts} part files under {out / 'stages'}), the batch "
            f"in flight is redone; resume with: {resume}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code) from None
    except OSError as err:
        _fail(os_error_message(err, out), 1)
    finally:
        signal.signal(signal.SIGTERM, previous)


def os_error_message(err: OSError, out: Path) -> str:
    """One paragraph on a filesystem error: the path, the cause, and what to do."""
    path = err.filename or out
    causes = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EEXIST: "it exists and is not a folder" if Path(path).is_file() else "it exists",
        errno.EISDIR: "it is a folder, not a file",
    }
    cause = causes.get(err.errno or 0, err.strerror or str(err))
    return (
        f"{path}: {cause} ({type(err).__name__}, errno {err.errno}). Results stored before the error are kept in "
        f"{out / 'stages'} and the previous dataset is left as it was; fix the cause and run the same command again "
        "to resume."
    )


def _check_outcome(report: dict[str, Any], out: Path) -> None:
    """Exit non-zero when the run produced nothing: no seed items at all, or a stage that failed every sample."""
    for name, stage in report["stages"].items():
        if stage["items_in"] == 0 and name == "source":
            skipped = report.get("skipped") or {}
            shown = "; ".join(f"{path}: {why}" for path, why in list(skipped.items())[:3])
            _fail(f"the source found no seed items{f' (skipped {len(skipped)} files: {shown})' if skipped else ''}", 1)
        if stage["items_in"] and not stage["items_out"]:
            kind, count = max(stage["failures"].items(), key=lambda kv: kv[1])
            example = stage.get("failure_examples", {}).get(kind, "")
            _fail(
                f"the {name} stage failed all {stage['items_in']} samples; the most common reason is {kind} "
                f"({count} samples): {example} (every failure is counted in {out / 'run.json'})",
                1,
            )


def _load(recipe: Path):  # -> Recipe
    from syngen.recipe import RecipeError, load_recipe

    try:
        return load_recipe(recipe)
    except RecipeError as err:
        _fail(str(err))


@app.command()
def run(
    recipe: Path = typer.Argument(DEFAULT_RECIPE, help="Recipe YAML; default: the offline quickstart."),
    out: Path | None = typer.Option(None, "--out", help="Output folder; default outputs/<recipe name>."),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Use at most N seed items."),
    fresh: bool = typer.Option(False, "--fresh", help="Drop earlier results in the output folder and start over."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar per stage."),
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
    from syngen.executors import ShardError, shard_from_env
    from syngen.executors.local import ShardedFresh
    from syngen.executors.lock import RunLocked
    from syngen.models.loading import PreflightError

    loaded = _load(recipe)
    out_dir = loaded.out_dir(out)
    with _reported(out_dir, f"syngen run {recipe} --out {out_dir}"):
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
                )
            else:
                from syngen.executors.local import run as run_local
                from syngen.executors.shard import Shard

                part = Shard.parse(shard) if shard else shard_from_env()
                report = run_local(loaded, out_dir, fresh=fresh, limit=limit, progress=progress, shard=part)
                if not part.whole:
                    print_report(report)
                    console.print(f"shard {part} done; once every shard is: syngen export {out_dir}")
                    return
        except (PreflightError, RunLocked, ShardError, ShardedFresh) as err:
            _fail(str(err))
    print_report(report)
    console.print(f"dataset: {out_dir / 'dataset'}   report: {out_dir / 'run.json'}")
    _check_outcome(report, out_dir)
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
    partial: bool = typer.Option(
        False, "--partial", help="Export an unfinished run's complete samples; the card then says it is partial."
    ),
) -> None:
    """Rewrite OUT/dataset from the stage stores of every shard (no model runs). An unfinished run is refused
    unless --partial."""
    from syngen.executors.local import UnfinishedRun, recipe_path
    from syngen.executors.local import export as export_stores
    from syngen.executors.lock import RunLocked
    from syngen.store import StaleStore

    recipe = recipe or recipe_path(out)
    if recipe is None:
        _fail(f"{out}: no run.json saying which recipe made it; pass --recipe")
    loaded = _load(recipe)
    with _reported(out, f"syngen export {out} --recipe {recipe}"):
        try:
            path, is_partial = export_stores(loaded, out, partial=partial)
        except RunLocked as err:
            _fail(str(err))
        except UnfinishedRun as err:
            _fail(str(err), 1)
        except StaleStore as err:
            _fail(f"{err}; run the recipe to bring {out} up to date, or pass the recipe that made it with --recipe")
    console.print(f"dataset: {path}{' (partial)' if is_partial else ''}")


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
