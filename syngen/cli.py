"""The `syngen` command line: run, validate, export, inspect, push, models, and the ``train``/``eval`` sub-apps.

Every command's errors derive from :class:`~syngen.errors.SyngenError`; the app catches them once, prints the
message and exits with the error's code (2: bad recipe or arguments, 1: the run failed). A filesystem error of a
command that writes an output folder becomes an :class:`~syngen.errors.OutputError`; Ctrl-C and SIGTERM end it
with one line saying what was kept and how to resume (exit 130 and 143).
"""

from __future__ import annotations

import errno
import json
import logging
import os
import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from enum import Enum
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from syngen import log
from syngen.errors import OutputError, RunFailed, StaleStore, SyngenError, UsageError, printable
from syngen.eval.cli import eval_app
from syngen.train.cli import train_app

# syngen shows one progress bar per stage; the libraries' own bars (weights, parquet shards) are noise here.
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")

console = Console(stderr=True)
_log = logging.getLogger("syngen.cli")


class _Commands(TyperGroup):
    """The command group; a :class:`SyngenError` from any command becomes its message and exit code."""

    def invoke(self, ctx: Any) -> Any:  # a click Context (typer vendors click; Any fits either)
        try:
            return super().invoke(ctx)
        except SyngenError as err:
            console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False)  # a value may hold "[/]"
            raise typer.Exit(err.exit_code) from None


app = typer.Typer(
    cls=_Commands, add_completion=False, no_args_is_help=True, help="Synthetic grounding and segmentation data."
)
app.add_typer(train_app, name="train")
app.add_typer(eval_app, name="eval")


@app.callback()
def _main(
    verbose: Annotated[int, typer.Option("--verbose", "-v", count=True, help="More log output (debug).")] = 0,
    quiet: Annotated[bool, typer.Option("--quiet", help="Only warnings and errors in the log.")] = False,
) -> None:
    """Synthetic grounding and segmentation data."""
    log.setup(-1 if quiet else verbose)


def _hub_repo(value: str | None) -> str | None:
    """A ``--repo-id`` checked before any work: None or a repo id the Hub takes (else a usage error, exit 2)."""
    from syngen.refs import HUB_ID_RULE, is_hub_id

    if value is not None and not is_hub_id(value):
        raise typer.BadParameter(f"{value!r}: expected {HUB_ID_RULE}")
    return value


def _load(recipe: Path) -> Any:  # -> Recipe
    from syngen.recipe import load_recipe

    return load_recipe(recipe)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the command is, like Ctrl-C's KeyboardInterrupt."""


def _terminate(signum: int, frame: Any) -> None:
    raise _Terminated()


@contextmanager
def _writing(out: Path, resume: str) -> Iterator[None]:
    """Around a command that writes the output folder ``out``: a filesystem error becomes an
    :class:`OutputError` naming the path and the cause; Ctrl-C and SIGTERM end with one line saying what was
    kept and the command ``resume`` that resumes."""
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except KeyboardInterrupt as err:
        name, code = ("SIGTERM", 143) if isinstance(err, _Terminated) else ("Ctrl-C", 130)
        parts = len(list(out.glob("stages/*/part-*.parquet")))
        console.print(
            f"stopped by {name}: every finished batch is kept ({parts} loose part files under {out / 'stages'}), "
            f"the batch in flight is redone; resume with: {resume}",
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(code) from None
    except OSError as err:
        raise OutputError(os_error_message(err, out)) from None
    finally:
        signal.signal(signal.SIGTERM, previous)


def os_error_message(err: OSError, out: Path) -> str:
    """One paragraph on a filesystem error: the path, the cause, and what to do. Never raises: the path may be
    too long, unreadable, a dangling link or bytes that are not UTF-8."""
    path = printable(err.filename if err.filename is not None else out, 200)
    causes = {
        errno.ENOSPC: "the disk is full",
        errno.EDQUOT: "the disk quota is exhausted",
        errno.EROFS: "the file system is read-only",
        errno.EACCES: "permission denied",
        errno.EPERM: "operation not permitted",
        errno.ENOTDIR: "a part of the path is a file, not a folder",
        errno.EISDIR: "it is a folder, not a file",
        errno.ENAMETOOLONG: "the path or one of its names is too long for the file system",
        errno.ELOOP: "a symbolic link in the path loops",
    }
    if err.errno == errno.EEXIST:  # os.path.isfile answers False where stat fails (denied, too long, dangling)
        cause = "it exists and is not a folder" if os.path.isfile(err.filename or out) else "it exists"
    else:
        cause = causes.get(err.errno or 0, err.strerror or str(err))
    return (
        f"{path}: {cause} ({type(err).__name__}, errno {err.errno}). Results stored before the error are kept in "
        f"{printable(out / 'stages', 200)} and the previous dataset is left as it was; fix the cause and run the same "
        "command again to resume."
    )


def _check_outcome(report: dict[str, Any], out: Path) -> None:
    """Raises :class:`RunFailed` when the run produced nothing: no seed item at all, or a stage that failed every
    sample (naming the most common reason)."""
    for name, stage in report["stages"].items():
        if stage["items_in"] == 0 and name == "source":
            skipped = report.get("skipped") or {}
            shown = "; ".join(f"{path}: {why}" for path, why in list(skipped.items())[:3])
            raise RunFailed(
                f"the source found no seed items{f' (skipped {len(skipped)} files: {shown})' if skipped else ''}"
            )
        if stage["items_in"] and not stage["items_out"]:
            kind, count = max(stage["failures"].items(), key=lambda kv: kv[1])
            example = stage.get("failure_examples", {}).get(kind, "")
            raise RunFailed(
                f"the {name} stage failed all {stage['items_in']} samples; the most common reason is {kind} "
                f"({count} samples): {example} (every failure is counted in {out / 'run.json'})"
            )


@app.command()
def run(
    recipe: Annotated[
        Path | None, typer.Argument(help="Recipe YAML; default: the offline quickstart bundled with syngen.")
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="Output folder; default outputs/<recipe name>.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", min=1, help="Use at most N seed items.")] = None,
    fresh: Annotated[
        bool,
        typer.Option("--fresh", help="Drop what syngen wrote in the output folder (other files stay); start over."),
    ] = False,
    progress: Annotated[bool, typer.Option("--progress/--no-progress", help="Show a progress bar per stage.")] = True,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Compute the samples that failed before again (and nothing else).")
    ] = False,
    shard: Annotated[
        str | None,
        typer.Option(
            "--shard",
            help="Run only share K of N (K/N, from 0) of the seed items; default: the launcher's RANK/WORLD_SIZE "
            "or Slurm array ids, else the whole recipe. Shards share OUT; `syngen export OUT` merges them.",
        ),
    ] = None,
    ray: Annotated[
        str | None,
        typer.Option(
            "--ray",
            metavar="ADDRESS",
            help="Run the shards on a Ray cluster: `local` starts one on this machine, `auto` joins the one "
            "`ray start` started, or host:port. Needs `pip install syngen[ray]`.",
        ),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", min=1, help="--ray: worker actors (each keeps its models loaded).")
    ] = 2,
    gpus_per_worker: Annotated[float, typer.Option("--gpus-per-worker", min=0, help="--ray: GPUs per worker.")] = 0.0,
    shards: Annotated[
        int | None,
        typer.Option("--shards", min=1, help="--ray: shards to split the seed items into; default 4 per worker."),
    ] = None,
) -> None:
    """Run a recipe (resuming earlier work in the output folder) and export the dataset."""
    from syngen.assets import quickstart_recipe
    from syngen.executors.lock import folder_lock
    from syngen.shard import WHOLE, Shard, shard_from_env

    recipe = recipe or quickstart_recipe()
    loaded = _load(recipe)
    out_dir = loaded.out_dir(out)
    part = WHOLE if ray is not None else Shard.parse(shard) if shard else shard_from_env()
    # the folder is claimed and locked before the slow part (imports, twin building): a busy one is refused at once
    with _writing(out_dir, f"syngen run {recipe} --out {out_dir}"), folder_lock(out_dir, part):
        _log.info("loading models…")
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

            report = run_local(
                loaded, out_dir, fresh=fresh, limit=limit, progress=progress, shard=part, retry_failed=retry_failed
            )
            if not part.whole:
                print_report(report)
                console.print(f"shard {part} done; once every shard is: syngen export {out_dir}")
                return
    print_report(report)
    console.print(f"dataset: {out_dir / 'dataset'}   report: {out_dir / 'run.json'}")
    _check_outcome(report, out_dir)
    if loaded.top.output.push_to_hub:
        _push(out_dir, loaded.top.output.push_to_hub, loaded.top.output.private, loaded.top.output.revision)


@app.command()
def validate(recipe: Annotated[Path, typer.Argument(help="Recipe YAML to check.")]) -> None:
    """Check a recipe against the schema without running anything."""
    loaded = _load(recipe)
    console.print(f"{recipe}: ok ({', '.join(loaded.stages)})")


class ExportFormat(str, Enum):
    """What `syngen export` writes."""

    hf = "hf"
    coco = "coco"
    yolo = "yolo"


@app.command()
def export(
    out: Annotated[Path, typer.Argument(help="A run's output folder.")],
    recipe: Annotated[
        Path | None, typer.Option("--recipe", help="The run's recipe; default: the one run.json names.")
    ] = None,
    repo_id: Annotated[
        str | None,
        typer.Option(
            "--repo-id",
            help="Hub repo the card's loading code names; default: the recipe's output.push_to_hub.",
            callback=_hub_repo,
        ),
    ] = None,
    partial: Annotated[
        bool,
        typer.Option(
            "--partial", help="Export an unfinished run's complete samples; the card then says it is partial."
        ),
    ] = False,
    fmt: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="hf: rewrite OUT/dataset from the stage stores; coco or yolo: convert OUT/dataset into "
            "OUT/export/<format>/ (replaced at each run).",
        ),
    ] = ExportFormat.hf,
) -> None:
    """Rewrite OUT/dataset from the stage stores of every shard (no model runs; an unfinished run is refused
    unless --partial), or convert it to COCO or YOLO files with --format."""
    if fmt is not ExportFormat.hf:
        _export_files(out, fmt)
        return
    from syngen.executors.base import export as export_stores
    from syngen.executors.base import recipe_path

    recipe = recipe or recipe_path(out)
    if recipe is None:
        raise UsageError(f"{out}: no run.json saying which recipe made it; pass --recipe")
    loaded = _load(recipe)
    with _writing(out, f"syngen export {out} --recipe {recipe}"):
        try:
            path, is_partial = export_stores(loaded, out, partial=partial, repo_id=repo_id)
        except StaleStore as err:
            raise UsageError(
                f"{err}; run the recipe to bring {out} up to date, or pass the recipe that made it with --recipe"
            ) from None
    console.print(f"dataset: {path}{' (partial)' if is_partial else ''}")


def _export_files(out: Path, fmt: ExportFormat) -> None:
    """``syngen export OUT --format coco|yolo``: converts OUT/dataset (which must exist) into OUT/export/<fmt>/."""
    from syngen.export.coco import export_coco
    from syngen.export.yolo import export_yolo

    if not (out / "dataset").is_dir():
        raise UsageError(
            f"{out}: no dataset folder to convert to {fmt.value}; run a recipe (or `syngen export {out}`) first"
        )
    try:
        folder = export_coco(out) if fmt is ExportFormat.coco else export_yolo(out)
    except OSError as err:
        raise OutputError(
            f"{err.filename or out / 'export'}: {err.strerror or err}; nothing was replaced (an earlier "
            f"{fmt.value} export is kept as it was); fix the cause and run the command again"
        ) from None
    console.print(f"{fmt.value}: {folder}")


@app.command()
def inspect(
    out: Annotated[Path, typer.Argument(help="A run's output folder, or a `syngen train` output folder.")],
    n: Annotated[
        int, typer.Option("--n", min=1, help="Samples (and preference pairs) drawn on the page and sheets.")
    ] = 16,
) -> None:
    """Write OUT/inspect/index.html, one self-contained report page. For a run: print the dataset statistics and
    write contact sheets (PNG) beside the page; for a training run: its curves and eval metrics over steps."""
    from syngen.page import is_training, write_page
    from syngen.stats import format_summary, summarize
    from syngen.viz import contact_sheet

    try:
        if is_training(out):
            console.print(f"page: {write_page(out)}")
            return
        if not (out / "dataset").exists():
            raise UsageError(f"{out}: no dataset folder and no metrics.jsonl; run a recipe (or train) first")
        Console().print(format_summary(summarize(out)))
        sheet, pairs = contact_sheet(out, n)
        console.print(f"contact sheets: {sheet}, {pairs}\npage: {write_page(out, n)}")
    except OSError as err:
        raise OutputError(
            f"{err.filename or out / 'inspect'}: {err.strerror or err}; the page was not written (the run's files "
            "are untouched)"
        ) from None


def _push(out: Path, repo_id: str, private: bool, revision: str | None) -> None:
    from syngen.push import push_dataset

    url = push_dataset(out / "dataset", repo_id, private=private, revision=revision)
    console.print(f"pushed: {url}")


@app.command()
def push(
    out: Annotated[Path, typer.Argument(help="A run's output folder.")],
    repo_id: Annotated[str, typer.Option("--repo-id", help="Hub dataset repo (org/name).", callback=_hub_repo)],
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
    roles = {name: ", ".join((spec.role, *spec.also)) for name, spec in BACKENDS.items()}
    Console().print("backends: " + ", ".join(f"{name} ({role})" for name, role in roles.items()))


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
    if skipped := report.get("skipped"):
        shown = "; ".join(f"{path}: {why}" for path, why in list(skipped.items())[:3])
        console.print(
            f"skipped {len(skipped)} files that are not seed images ({shown}{'; ...' if len(skipped) > 3 else ''})"
        )


STOPPED = (130, 143)  # the exit codes of a run stopped by Ctrl-C and SIGTERM


def main() -> None:
    """The ``syngen`` program: the app, and after Ctrl-C or SIGTERM the prompt back at once. The resume line is
    printed and the store's writes are on disk by then; the process ends without waiting for queued work in the
    worker threads or for the interpreter to tear down the loaded libraries (seconds with torch loaded)."""
    try:
        app()
    except SystemExit as done:
        if done.code in STOPPED:
            from syngen.engine.context import flush_writes

            flush_writes()
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(done.code)
        raise


if __name__ == "__main__":
    main()
