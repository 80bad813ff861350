"""``syngen train <objective>`` and ``syngen eval <task>``: typer sub-apps added to the main app.

A training command's options are generated from its config dataclass (one ``--option`` per field, with its
help text and default); ``--config train.yaml`` supplies any of them, and options given on the command line
override the file. Adding an objective is one line in :data:`OBJECTIVES`. Errors are
:class:`~syngen.errors.SyngenError` subclasses: the main app prints the message and exits with the error's code.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from syngen.errors import UsageError
from syngen.train.config import (
    AmcConfig,
    DpoConfig,
    SftConfig,
    TrainConfig,
    base_type,
    default_of,
    fields_of,
    load_config,
    options_table,
)

# objective name -> (config class, "module:Objective class"); the module is imported only when the command runs
OBJECTIVES: dict[str, tuple[type[TrainConfig], str]] = {
    "sft": (SftConfig, "syngen.train.sft:SftObjective"),
    "dpo": (DpoConfig, "syngen.train.dpo:DpoObjective"),
    "amc": (AmcConfig, "syngen.train.amc:AmcObjective"),
}

train_app = typer.Typer(no_args_is_help=True, help="Train on a syngen dataset (accelerate: CPU, GPU, multi-GPU).")
eval_app = typer.Typer(no_args_is_help=True, help="Score a checkpoint.")
console = Console(stderr=True)


def objective_class(name: str) -> Any:
    module, _, cls = OBJECTIVES[name][1].partition(":")
    return getattr(importlib.import_module(module), cls)


def run_objective(name: str, config: TrainConfig) -> Path:
    """Trains objective ``name`` with ``config``; returns the output folder."""
    from syngen.train.loop import train

    return train(objective_class(name)(config))


def _train_command(name: str, config_class: type[TrainConfig]) -> Callable[..., None]:
    """A typer command whose options are ``config_class``'s fields (all optional: unset ones come from the
    ``--config`` file or the dataclass default)."""

    def command(**kwargs: Any) -> None:
        config = load_config(config_class, kwargs.pop("config"), kwargs)
        out = run_objective(name, config)
        console.print(f"model: {out}   metrics: {out / 'metrics.jsonl'}")

    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, "--config", help="YAML file of options (command-line options override it)."),
            annotation=Path | None,
        )
    ]
    for f, annotation in fields_of(config_class):
        kind = base_type(annotation)
        flag = "--" + f.name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        default = default_of(f)
        shown = "" if default in ("", None) else f" (default: {default})"
        option = typer.Option(None, *decls, help=f.metadata.get("help", "") + shown, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = (config_class.__doc__ or "").strip()
    command.__name__ = name
    return command


for _name, (_config_class, _) in OBJECTIVES.items():
    train_app.command(_name)(_train_command(_name, _config_class))


def reference_markdown() -> str:
    """Each training command's options as a Markdown table (the README's trainer reference)."""
    return "\n\n".join(
        f"#### `syngen train {name}`\n\n{options_table(config_class)}" for name, (config_class, _) in OBJECTIVES.items()
    )


@eval_app.command("ris")
def eval_ris(
    model: Annotated[str, typer.Option("--model", help="Policy checkpoint folder (or Hub id) from `syngen train`.")],
    data: Annotated[str, typer.Option("--data", help="A syngen dataset, or a RefCOCO-style dataset or parquet files.")],
    split: Annotated[str, typer.Option("--split", help="Split to score.")] = "train",
    image_column: Annotated[str, typer.Option(help="RefCOCO-style: the image column.")] = "image",
    text_column: Annotated[str, typer.Option(help="RefCOCO-style: the expression(s) column.")] = "sentences",
    mask_column: Annotated[
        str, typer.Option(help="RefCOCO-style: the mask column (RLE or polygons).")
    ] = "segmentation",
    batch_size: Annotated[int, typer.Option(min=1, help="Expressions per forward pass.")] = 8,
    limit: Annotated[int | None, typer.Option(min=1, help="Score at most N expressions.")] = None,
    out: Annotated[Path | None, typer.Option(help="JSON report path; default: beside the checkpoint.")] = None,
) -> None:
    """Referring segmentation: oIoU, mIoU, gIoU and Prec@0.5-0.9 of a checkpoint on a dataset."""
    from rich.table import Table

    from syngen.evaluate import evaluate_ris, report_path, write_report

    try:
        report = evaluate_ris(
            model,
            data,
            split,
            image_column=image_column,
            text_column=text_column,
            mask_column=mask_column,
            batch_size=batch_size,
            limit=limit,
        )
    except (OSError, ValueError) as err:  # a file the libraries cannot read (FileNotFoundError is an OSError)
        raise UsageError(str(err)) from None
    table = Table("metric", "value", title=f"ris: {model} on {data} [{split}]")
    for name, value in report["metrics"].items():
        table.add_row(name, f"{value:.4f}" if isinstance(value, float) else str(value))
    Console().print(table)
    console.print(f"report: {write_report(report, out or report_path(model, data, split))}")


@eval_app.command("pointing")
def eval_pointing(
    model: Annotated[str, typer.Option("--model", help="BLIP ITM checkpoint from `syngen train amc` (or Hub id).")],
    data: Annotated[str, typer.Option("--data", help="A syngen dataset, or a RefCOCO-style dataset or parquet files.")],
    split: Annotated[str, typer.Option("--split", help="Split to score.")] = "train",
    baseline: Annotated[
        str | None, typer.Option(help="Also score this checkpoint (e.g. the untrained one), side by side.")
    ] = None,
    image_column: Annotated[str, typer.Option(help="RefCOCO-style: the image column.")] = "image",
    text_column: Annotated[str, typer.Option(help="RefCOCO-style: the expression(s) column.")] = "sentences",
    box_column: Annotated[str, typer.Option(help="RefCOCO-style: the box column (COCO x, y, width, height).")] = "bbox",
    mask_column: Annotated[
        str,
        typer.Option(help="RefCOCO-style: the mask column, whose bounding box is used when there is no box column."),
    ] = "segmentation",
    gradcam_layer: Annotated[
        int | None, typer.Option(help="Text-encoder layer for Grad-CAM; default: the one --model was trained with.")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Phrases per forward pass.")] = 8,
    limit: Annotated[int | None, typer.Option(min=1, help="Score at most N phrases.")] = None,
    heatmaps: Annotated[int, typer.Option(min=0, help="Draw the first N phrases' heat maps into a PNG sheet.")] = 0,
    out: Annotated[Path | None, typer.Option(help="JSON report path; default: beside the checkpoint.")] = None,
) -> None:
    """Pointing game: the share of phrases whose Grad-CAM heat map peaks strictly inside one of their boxes."""
    from rich.table import Table

    from syngen.evaluate import evaluate_pointing, report_path, write_report

    path = out or report_path(model, data, split, "pointing")
    try:
        report = evaluate_pointing(
            model,
            data,
            split,
            baseline=baseline,
            image_column=image_column,
            text_column=text_column,
            box_column=box_column,
            mask_column=mask_column,
            batch_size=batch_size,
            limit=limit,
            layer=gradcam_layer,
            heatmaps=heatmaps,
            sheet=path.with_name(path.stem + "-heatmaps.png"),
        )
    except (OSError, ValueError) as err:  # a file the libraries cannot read (FileNotFoundError is an OSError)
        raise UsageError(str(err)) from None
    columns = ["baseline", "model"] if baseline else ["model"]
    table = Table("metric", *columns, title=f"pointing: {model} on {data} [{split}]")
    runs = [report["baseline"]["metrics"], report["metrics"]] if baseline else [report["metrics"]]
    for name in ("n", "hits", "accuracy"):
        table.add_row(name, *(f"{run[name]:.4f}" if name == "accuracy" else str(run[name]) for run in runs))
    Console().print(table)
    console.print("".join(f"skipped {n} {why}\n" for why, n in report["skipped"].items()), end="")
    console.print(f"report: {write_report(report, path)}" + (f"   heat maps: {report['heatmaps']}" if heatmaps else ""))
