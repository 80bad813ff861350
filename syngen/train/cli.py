"""``syngen train <objective>`` and ``syngen eval <task>``: typer sub-apps added to the main app.

A training command's options are generated from its config dataclass (one ``--option`` per field, with its
help text and default; ``--option_name`` works too); ``--config train.yaml`` supplies any of them, and options
given on the command line override the file. syngen's earlier option names are hidden options that still work,
with a deprecation warning; an unknown option gets a "did you mean". Adding an objective is one line in
:data:`OBJECTIVES`. Errors are :class:`~syngen.errors.SyngenError` subclasses: the main app prints the message and
exits with the error's code.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperCommand

from syngen.errors import UsageError
from syngen.registry import load_target
from syngen.train.config import (
    AmcConfig,
    DpoConfig,
    SftConfig,
    TrainConfig,
    base_type,
    default_of,
    did_you_mean,
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
log = logging.getLogger(__name__)


def objective_class(name: str) -> Any:
    return load_target(OBJECTIVES[name][1])


def run_objective(name: str, config: TrainConfig) -> Path:
    """Trains objective ``name`` with ``config``; returns the output folder."""
    from syngen.train.loop import train

    return train(objective_class(name)(config))


class TrainCommand(TyperCommand):
    """A training command that reads ``--option_name`` as ``--option-name``, turns ``--push-to-hub ORG/NAME``
    (syngen's earlier spelling) into ``--push-to-hub --hub-model-id ORG/NAME``, and refuses an unknown option
    with the closest known one, before click parses the arguments."""

    config_class: type[TrainConfig] = TrainConfig

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        known = {opt for param in self.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}
        out: list[str] = []
        for i, arg in enumerate(args):
            if not arg.startswith("--") or arg == "--":
                out.append(arg)
                continue
            flag, eq, value = arg.partition("=")
            flag = flag.replace("_", "-")
            if flag not in known:
                suggestion = did_you_mean(flag[2:].removeprefix("no-"), self.config_class, flags=True)
                raise UsageError(
                    f"unknown option {flag} for `syngen train {self.name}`{suggestion} "
                    f"(`syngen train {self.name} --help` lists the options)"
                )
            if flag == "--push-to-hub" and not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
                out += [flag, "--hub-model-id"]  # the next argument, the repo id, follows
                log.warning("--push-to-hub ORG/NAME is deprecated: use --push-to-hub with --hub-model-id")
                continue
            out.append(flag + eq + value)
        return super().parse_args(ctx, out)


def _train_command(name: str, config_class: type[TrainConfig]) -> Callable[..., None]:
    """A typer command whose options are ``config_class``'s fields (all optional: unset ones come from the
    ``--config`` file or the dataclass default), plus hidden options for the fields' earlier names."""

    def command(**kwargs: Any) -> None:
        config = load_config(config_class, kwargs.pop("config"), kwargs)
        out = run_objective(name, config)
        console.print(f"model: {out}   metrics: {out / 'metrics.jsonl'}")

    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None, "--config", help="YAML file of options, or an earlier run's training_config.json."
            ),
            annotation=Path | None,
        )
    ]
    fields = {f.name: annotation for f, annotation in fields_of(config_class)}
    for f, annotation in fields_of(config_class):
        default = default_of(f)
        shown = "" if default in ("", None) else f" (default: {default})"
        params.append(_option(f.name, base_type(annotation), f.metadata.get("help", "") + shown))
    for old, new in config_class.renamed.items():  # translated by load_config, with a deprecation warning
        kind = str if old == "mixed_precision" else bool if old == "resume" else base_type(fields[new])
        params.append(_option(old, kind, f"Deprecated: use --{new.replace('_', '-')}.", hidden=True))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = (config_class.__doc__ or "").strip()
    command.__name__ = name
    return command


def _option(name: str, kind: type, help: str, hidden: bool = False) -> inspect.Parameter:
    """The keyword parameter of a typer command for option ``name`` (``--name/--no-name`` for a bool)."""
    flag = "--" + name.replace("_", "-")
    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    option = typer.Option(None, *decls, help=help, show_default=False, hidden=hidden)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None)


for _name, (_config_class, _) in OBJECTIVES.items():
    _cls = type(f"Train{_name.title()}Command", (TrainCommand,), {"config_class": _config_class})
    train_app.command(_name, cls=_cls)(_train_command(_name, _config_class))


def reference_markdown() -> str:
    """Each training command's options as a Markdown table (the README's trainer reference)."""
    return "\n\n".join(
        f"#### `syngen train {name}`\n\n{options_table(config_class)}" for name, (config_class, _) in OBJECTIVES.items()
    )


@eval_app.command("ris")
def eval_ris(
    model: Annotated[str, typer.Option("--model", help="Policy checkpoint folder (or Hub id) from `syngen train`.")],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="A benchmark as published (lmms-lab/RefCOCO*, moondream/refcoco-m, gRefCOCO's G_REFER folder: a "
            "Hub id in the local cache or a local copy), a syngen dataset, or a table read through the column options.",
        ),
    ],
    split: Annotated[
        str | None, typer.Option("--split", help="Split(s) to score, comma-separated; default: the layout's own.")
    ] = None,
    format: Annotated[
        str | None,
        typer.Option("--format", help="Layout: syngen, grefcoco, refcoco, refcoco-m or columns; default: detected."),
    ] = None,
    image_column: Annotated[str, typer.Option(help="columns layout: the image column.")] = "image",
    text_column: Annotated[str, typer.Option(help="columns layout: the expression(s) column.")] = "sentences",
    mask_column: Annotated[
        str, typer.Option(help="columns layout: the mask column (RLE or polygons).")
    ] = "segmentation",
    batch_size: Annotated[int, typer.Option(min=1, help="Expressions per forward pass.")] = 8,
    limit: Annotated[int | None, typer.Option(min=1, help="Score at most N expressions.")] = None,
    output_dir: Annotated[
        Path | None,
        typer.Option(help="Eval folder (predictions.jsonl, report.json); default: CKPT/eval-ris-<dataset name>."),
    ] = None,
    resume: Annotated[
        bool, typer.Option(help="Keep the predictions already in the eval folder and score only the rest.")
    ] = True,
) -> None:
    """Referring segmentation: each layout's metrics (oIoU/cIoU, mIoU, gIoU, N-acc, T-acc, Prec@X) per split."""
    from rich.table import Table

    from syngen.evalsets import Columns
    from syngen.evaluate import evaluate_ris

    try:
        report = evaluate_ris(
            model,
            data,
            split,
            format=format,
            columns=Columns(image_column, text_column, mask_column),
            batch_size=batch_size,
            limit=limit,
            output_dir=output_dir,
            resume=resume,
        )
    except (OSError, ValueError) as err:  # a file the libraries cannot read (FileNotFoundError is an OSError)
        raise UsageError(str(err)) from None
    splits = report["metrics"]
    table = Table("metric", *splits, title=f"ris ({report['format']}): {model} on {data}")
    for name in dict.fromkeys(key for metrics in splits.values() for key in metrics):
        values = (metrics.get(name) for metrics in splits.values())
        table.add_row(name, *("-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v) for v in values))
    Console().print(table)
    console.print(f"report: {Path(report['predictions']).with_name('report.json')}")


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
