"""Scoring checkpoints: ``syngen eval ris`` (referring segmentation) and ``syngen eval pointing`` (the pointing
game of an image-text matching model's Grad-CAM), with :mod:`syngen.metrics`.

Data for ``ris``: a benchmark in one of the layouts :mod:`syngen.eval.sets` reads (lmms-lab RefCOCO*,
moondream/refcoco-m, gRefCOCO's G_REFER files, a syngen dataset, or any table through column options).
Predictions are appended to ``predictions.jsonl`` in the eval folder one batch at a time, so a killed run
resumes: a rerun scores only the expressions not yet there. Expressions are scored in image order and each
image is encoded once (:class:`~syngen.train.policy.EmbeddingCache`).

Data for ``pointing``: a syngen ``grounding`` config's regions (a phrase with several boxes on one image is one
query, a hit in any box counts), or a RefCOCO-style table whose box column holds COCO ``[x, y, width, height]``
(without that column, the box around the mask column's mask). Nothing is unpickled.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import re
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import datasets
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from syngen.errors import DatasetError
from syngen.eval.sets import Columns, EvalSet, Expression, open_evalset
from syngen.eval.sets.native import is_syngen
from syngen.eval.sets.tables import load_tables, sentences, to_mask
from syngen.metrics import intersection_union, pointing_accuracy, pointing_hit, upsample
from syngen.store import atomic_write_text
from syngen.train.data import NAN_BOXES, load_split
from syngen.train.policies import Policy, load_policy
from syngen.train.policy import EmbeddingCache, TextPromptableSam, image_key


def load_table(spec: str, split: str) -> datasets.Dataset:
    """Split ``split`` of a table dataset (:func:`~syngen.eval.sets.tables.load_tables`); a dataset of one table
    (e.g. one parquet file) is that table whatever ``split`` says."""
    tables = load_tables(spec)
    if split in tables:
        return tables[split]
    if len(tables) == 1:
        return next(iter(tables.values()))
    raise DatasetError(f"{spec}: no split {split!r}; splits: {', '.join(tables)}")


RECORD = {"key", "i", "u", "pred", "target"}


class PredictionLog:
    """``predictions.jsonl`` in an eval folder: one JSON line per scored batch (a list of records ``{"key", "i",
    "u", "pred", "target"}``: intersection, union, predicted and target areas), appended with one write and
    fsync'ed, so a kill loses at most the batch being written. A torn last line is dropped (and cut off) on
    reading. ``fingerprint.json`` names the checkpoint, data and layout the lines belong to; another fingerprint,
    or ``resume=False``, starts the file over. ``records`` maps each stored key to its record."""

    def __init__(self, folder: Path, fingerprint: dict[str, Any], resume: bool = True):
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / "predictions.jsonl"
        marker = folder / "fingerprint.json"
        try:
            stored = json.loads(marker.read_text(encoding="utf-8")) if marker.is_file() else None
        except ValueError:  # a damaged marker: the lines cannot be trusted
            stored = None
        self.restarted = self.path.exists() and (not resume or stored != fingerprint)
        if self.restarted or stored != fingerprint:
            self.path.unlink(missing_ok=True)
            atomic_write_text(marker, json.dumps(fingerprint))
        self.records: dict[str, dict[str, Any]] = self._read()

    def _read(self) -> dict[str, dict[str, Any]]:
        records: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return records
        good = 0
        with self.path.open("rb") as f:
            for line in f:
                try:
                    batch = json.loads(line) if line.endswith(b"\n") else None
                except ValueError:
                    batch = None
                if not isinstance(batch, list) or not all(isinstance(r, dict) and r.keys() >= RECORD for r in batch):
                    break
                records.update((record["key"], record) for record in batch)
                good += len(line)
        if good < self.path.stat().st_size:  # a batch torn by a kill: drop it, so appends stay whole lines
            os.truncate(self.path, good)
        return records

    def append(self, records: list[dict[str, Any]]) -> None:
        line = (json.dumps(records, separators=(",", ":")) + "\n").encode()
        with self.path.open("ab") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        self.records.update((record["key"], record) for record in records)


def model_fingerprint(model: str) -> str:
    """A checkpoint's identity: its weights' and config's names, sizes and times for a folder, else its id."""
    folder = Path(model)
    if not folder.is_dir():
        return model
    files = sorted(p for p in folder.iterdir() if p.suffix == ".safetensors" or p.name == "config.json")
    stats = [(p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in files]
    return f"{folder.resolve()}:{hashlib.sha1(json.dumps(stats).encode()).hexdigest()}"


def choose_splits(evalset: EvalSet, split: str | None) -> list[str]:
    """``split`` (comma-separated names) checked against the dataset's splits, or its default splits."""
    if not split:
        return evalset.default_splits()
    wanted = [name.strip() for name in split.split(",") if name.strip()]
    known = evalset.splits()
    missing = [name for name in wanted if known and name not in known]
    if missing:
        raise DatasetError(f"{evalset.data}: no split {', '.join(missing)}; splits: {', '.join(known)}")
    return wanted


def score_batch(
    policy: Policy, cache: EmbeddingCache, evalset: EvalSet, batch: Sequence[Expression], device: str
) -> list[dict[str, Any]]:
    """Predicts a mask for each expression of ``batch`` (each record read and each image encoded once) and
    returns its prediction record."""
    records = {(e.split, e.row): evalset.record(e.split, e.row) for e in batch}
    images = {place: evalset.image(record) for place, record in records.items()}
    pictures = [images[(e.split, e.row)] for e in batch]
    keys = [image_key(f"{e.split}/{e.image_id}", image) for e, image in zip(batch, pictures, strict=True)]
    embeddings = cache.embeddings(policy, pictures, keys)
    tokens = {k: v.to(device) for k, v in policy.tokenize([e.phrase for e in batch]).items()}
    logits, _ = policy(embeddings, tokens["input_ids"], tokens["attention_mask"])
    predictions = policy.image_masks(logits, [(image.height, image.width) for image in pictures])
    out = []
    for e, image, pred in zip(batch, pictures, predictions, strict=True):
        try:
            target = evalset.target(records[(e.split, e.row)], e, image.height, image.width)
        except DatasetError:
            raise
        except ValueError as err:  # to_mask: a mask of another size than its image, or garbage RLE
            where = f"row {e.row}, column {evalset.mask_column(e)!r} (split {e.split!r})"
            raise DatasetError(f"{evalset.data}: {where}: {err}") from None
        i, u = intersection_union(pred, target)
        out.append({"key": f"{e.split}/{e.key}", "i": i, "u": u, "pred": int(pred.sum()), "target": int(target.sum())})
    return out


@torch.no_grad()
def evaluate_ris(
    model: str,
    data: str,
    split: str | None = None,
    *,
    format: str | None = None,
    columns: Columns | None = None,
    batch_size: int = 8,
    limit: int | None = None,
    output_dir: Path | None = None,
    resume: bool = True,
    device: str | None = None,
) -> dict[str, Any]:
    """Scores the policy checkpoint ``model`` on ``data`` (layout ``format``, None = detected), resuming from the
    predictions already in ``output_dir`` (default :func:`eval_dir`); writes ``report.json`` there.

    ``split``: comma-separated split names, None = the layout's default (every split; gRefCOCO: all but train;
    a syngen dataset: train). ``limit``: at most that many expressions (the first, in scoring order). Returns
    ``{"model", "data", "format", "splits", "metrics": {split: {...}}, "scored", "resumed", "images_encoded",
    "predictions"}``.
    """
    TextPromptableSam.locate(model)  # a missing checkpoint is named before an eval folder is made for it
    evalset = open_evalset(data, format, columns)
    splits = choose_splits(evalset, split)
    folder = output_dir or eval_dir(model, data)
    log = PredictionLog(folder, {"model": model_fingerprint(model), "data": data, "format": evalset.name}, resume)
    if log.restarted and resume:
        tqdm.write(f"{log.path}: predictions of another checkpoint, dataset or layout; scoring from the start")
    # in image order (a stable sort), so each image's expressions meet the embedding cache together
    chosen = [e for name in splits for e in sorted(evalset.expressions(name), key=lambda e: e.image_id)][:limit]
    pending = [e for e in chosen if f"{e.split}/{e.key}" not in log.records]
    cache = EmbeddingCache(limit=max(2 * batch_size, 16))
    if pending:
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        policy = load_policy(model, device).eval()
        progress = tqdm(total=len(chosen), initial=len(chosen) - len(pending), unit="expr", desc=evalset.name)
        with progress:
            for start in range(0, len(pending), batch_size):
                batch = pending[start : start + batch_size]
                log.append(score_batch(policy, cache, evalset, batch, device))
                progress.update(len(batch))
    metrics = {}
    for name in splits:
        records = [log.records[f"{e.split}/{e.key}"] for e in chosen if e.split == name]
        metrics[name] = evalset.metrics(*([r[k] for r in records] for k in ("i", "u", "pred", "target")))
    report = {
        "model": model,
        "data": data,
        "format": evalset.name,
        "splits": splits,
        "metrics": metrics,
        "scored": len(pending),
        "resumed": len(chosen) - len(pending),
        "images_encoded": cache.encoded,
        "predictions": str(log.path),
    }
    write_report(report, folder / "report.json")
    return report


def eval_dir(model: str, data: str, task: str = "ris") -> Path:
    """The default eval folder: ``<model folder>/eval-<task>-<dataset name>`` (the current folder for a Hub
    model id)."""
    name = re.sub(r"[^\w.-]+", "_", Path(data.rstrip("/")).name or data)
    return (Path(model) if Path(model).is_dir() else Path(".")) / f"eval-{task}-{name}"


def report_path(model: str, data: str, split: str, task: str = "pointing") -> Path:
    """Where a pointing report is written: ``<model folder>/eval-<task>-<dataset name>-<split>.json`` (the current
    folder for a Hub model id)."""
    folder = eval_dir(model, data, task)
    return folder.with_name(f"{folder.name}-{split}.json")


def write_report(report: dict[str, Any], path: Path) -> Path:
    path.write_text(json.dumps(report, indent=2), encoding="utf-8")
    return path


def pointing_examples(
    spec: str,
    split: str,
    image_column: str,
    text_column: str,
    box_column: str,
    mask_column: str,
    skipped: Counter[str] | None = None,
) -> Iterator[dict[str, Any]]:
    """``{"image", "phrase", "boxes"}`` (xyxy pixels) per pointing-game query (see the module docstring). Boxes
    with a NaN or infinite coordinate are left out, and counted in ``skipped``."""
    skipped = Counter() if skipped is None else skipped
    if is_syngen(spec):
        rows = load_split(spec, "grounding", split).select_columns(["image", "regions"])
        for row in rows:
            boxes: dict[str, list[list[float]]] = {}
            for region in row["regions"] or []:
                if region.get("phrase") and region.get("box"):
                    if not all(map(math.isfinite, region["box"])):
                        skipped[NAN_BOXES] += 1
                        continue
                    boxes.setdefault(region["phrase"], []).append(list(region["box"]))
            image = row["image"].convert("RGB")
            for phrase, found in boxes.items():
                yield {"image": image, "phrase": phrase, "boxes": found}
        return
    table = load_table(spec, split)
    box_source = box_column if box_column in table.column_names else mask_column
    missing = [c for c in (image_column, text_column, box_source) if c not in table.column_names]
    if missing:
        raise DatasetError(f"{spec}: no column {', '.join(missing)}; columns: {', '.join(table.column_names)}")
    for i, row in enumerate(table.select_columns([image_column, text_column, box_source])):
        image = row[image_column]
        image = (image if isinstance(image, Image.Image) else Image.open(image)).convert("RGB")
        box: list[float] | None
        if box_source == box_column:
            x, y, w, h = map(float, row[box_column])
            box = [x, y, x + w, y + h]
            if not all(map(math.isfinite, box)):
                skipped[NAN_BOXES] += 1
                continue
        else:
            try:
                ys, xs = np.nonzero(to_mask(row[mask_column], image.height, image.width))
            except ValueError as err:
                raise DatasetError(f"{spec}: row {i}, column {mask_column!r}: {err}") from None
            box = [float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)] if len(xs) else None
        for text in sentences(row[text_column]) if box else []:
            yield {"image": image, "phrase": text, "boxes": [box]}


def evaluate_pointing(
    model: str,
    data: str,
    split: str = "train",
    *,
    baseline: str | None = None,
    image_column: str = "image",
    text_column: str = "sentences",
    box_column: str = "bbox",
    mask_column: str = "segmentation",
    batch_size: int = 8,
    limit: int | None = None,
    layer: int | None = None,
    heatmaps: int = 0,
    sheet: Path | None = None,
    device: str | None = None,
) -> dict[str, Any]:
    """Pointing-game accuracy of the BLIP ITM checkpoint ``model`` (and of ``baseline``, when given) on ``data``.

    ``layer`` None = the ``gradcam_layer`` ``model`` was trained with (its ``training_config.json``), else -4.
    With ``heatmaps`` N and a ``sheet`` path, the first N queries' heat maps are drawn there (baseline first).
    Returns ``{"model", "data", "split", "gradcam_layer", "metrics"}`` plus ``"baseline": {"model", "metrics"}``.
    """
    from syngen.train.amc import check_layer, load_itm
    from syngen.train.amc import heatmaps as gradcam_maps
    from syngen.viz import draw_heatmap, heatmap_sheet

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    layer = trained_layer(model) if layer is None else layer
    runs = {"baseline": baseline, "model": model} if baseline else {"model": model}
    drawn: dict[str, list[Image.Image]] = {}
    scores: dict[str, dict[str, float]] = {}
    for role, name in runs.items():
        itm = load_itm(name, device)
        check_layer(itm.model, layer)
        skipped: Counter[str] = Counter()
        queries = pointing_examples(data, split, image_column, text_column, box_column, mask_column, skipped)
        examples = itertools.islice(queries, limit)
        hits: list[bool] = []
        drawn[role] = []
        while batch := list(itertools.islice(examples, batch_size)):
            maps = gradcam_maps(itm, [ex["image"] for ex in batch], [ex["phrase"] for ex in batch], layer)
            for ex, heat in zip(batch, maps, strict=True):
                hits.append(pointing_hit(heat, ex["boxes"], ex["image"].size))
                if len(drawn[role]) < heatmaps:
                    full = upsample(heat, ex["image"].size).clamp(0, 1).numpy()
                    drawn[role].append(draw_heatmap(ex["image"], full, ex["boxes"], ex["phrase"], hits[-1]))
        scores[role] = {"n": len(hits), "hits": sum(hits), "accuracy": pointing_accuracy(hits)}
        itm.close()
    report: dict[str, Any] = {"model": model, "data": data, "split": split, "gradcam_layer": layer}
    report["skipped"] = dict(skipped)  # the same for every run
    report["metrics"] = scores["model"]
    if baseline:
        report["baseline"] = {"model": baseline, "metrics": scores["baseline"]}
    if heatmaps and sheet is not None:
        tags = {"baseline": "baseline", "model": "trained"} if baseline else {"model": "model"}
        rows = [[(drawn[role][i], f"#{i} {tag}") for role, tag in tags.items()] for i in range(len(drawn["model"]))]
        report["heatmaps"] = str(heatmap_sheet(rows, sheet))
    return report


def trained_layer(model: str) -> int:
    """The ``gradcam_layer`` of a ``syngen train amc`` output or checkpoint folder; -4 (the default) otherwise."""
    saved = Path(model) / "training_config.json"
    if saved.is_file():
        return int(json.loads(saved.read_text(encoding="utf-8")).get("gradcam_layer", -4))
    return -4
