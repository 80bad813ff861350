"""``syngen eval <task>``: a typer sub-app added to the main app, scoring a checkpoint from ``syngen train``.

Errors are :class:`~syngen.errors.SyngenError` subclasses: the main app prints the message and exits with the
error's code; a file the libraries cannot read is a usage error.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from syngen.cpus import set_torch_threads
from syngen.errors import UsageError

eval_app = typer.Typer(no_args_is_help=True, help="Score a checkpoint.")
console = Console(stderr=True)

CpuThreads = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="CPU threads torch keeps busy; default: the process's CPU share (its affinity, capped by a cgroup CPU "
        "quota as in containers and Slurm jobs), less one for its other threads.",
    ),
]  # both eval commands' --cpu-threads


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
    cpu_threads: CpuThreads = None,
) -> None:
    """Referring segmentation: each layout's metrics (oIoU/cIoU, mIoU, gIoU, N-acc, T-acc, Prec@X) per split."""
    from rich.table import Table

    from syngen.eval.evaluate import evaluate_ris
    from syngen.eval.sets import Columns

    set_torch_threads(cpu_threads)
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
    cpu_threads: CpuThreads = None,
) -> None:
    """Pointing game: the share of phrases whose Grad-CAM heat map peaks strictly inside one of their boxes."""
    from rich.table import Table

    from syngen.eval.evaluate import evaluate_pointing, report_path, write_report

    set_torch_threads(cpu_threads)
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
