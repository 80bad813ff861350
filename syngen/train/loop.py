"""The one training loop (accelerate): any :class:`~syngen.train.objective.Objective` on CPU, one GPU or several.

``train(objective)`` runs ``config.max_steps`` optimizer steps (or ``config.num_train_epochs`` passes), with
gradient accumulation, mixed precision and data parallelism from accelerate (start several processes with
``accelerate launch``; each process sees a disjoint share of every epoch's batches). It logs through
:class:`~syngen.train.logger.MetricsLogger`, saves ``<output_dir>/checkpoint-<step>/`` every ``save_steps``
(see :mod:`syngen.train.checkpoint`), writes the final model into ``<output_dir>/`` and pushes it when asked.
With ``config.resume_from_checkpoint`` it continues from a checkpoint (``true``: the last complete one),
reproducing the uninterrupted run.
"""

from __future__ import annotations

import math
import shutil
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import torch
from accelerate import Accelerator, DataLoaderConfiguration, DistributedDataParallelKwargs
from accelerate.utils import set_seed
from torch.utils.data import DataLoader
from transformers import get_scheduler

from syngen.cpus import local_processes, set_torch_threads
from syngen.errors import ConfigError, TrainError
from syngen.train.checkpoint import latest_checkpoint, prune, push_model, read_state, write_model_folder
from syngen.train.curves import plot_curves
from syngen.train.evaluation import holdout
from syngen.train.logger import MetricsLogger
from syngen.train.objective import Objective
from syngen.train.state import restore_state, save_state


def make_accelerator(cpu: bool, mixed_precision: str = "no", grad_accum: int = 1) -> Accelerator:
    """The run's accelerator; CPU when asked or when there is no GPU (``cpu=True`` lets two CPU processes under
    ``accelerate launch`` form one data-parallel group)."""
    return Accelerator(
        cpu=cpu or not torch.cuda.is_available(),
        mixed_precision=mixed_precision,
        gradient_accumulation_steps=grad_accum,
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True),
        # parts of a model can be outside the loss (e.g. SAM's IoU head): DDP must not wait for their gradients
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )


def train(objective: Objective) -> Path:
    """Trains ``objective`` as its config says; returns the output folder (which holds the final model)."""
    config = objective.config
    out = Path(config.output_dir)
    accelerator = make_accelerator(config.use_cpu, config.mixed_precision, config.gradient_accumulation_steps)
    main = accelerator.is_main_process
    set_torch_threads(config.cpu_threads, local_processes(accelerator.num_processes))
    if main:
        out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    # the main process first: it builds tiny twins and dataset caches (transformers' save_pretrained writes
    # weights only on rank 0), the others then read them
    with accelerator.main_process_first():
        model = objective.build(accelerator.device)
        dataset = objective.dataset()
        eval_set = objective.dataset(config.dataset_test_split) if config.dataset_test_split else None
    for split, found_set in ((config.dataset_train_split, dataset), (config.dataset_test_split, eval_set)):
        if found_set is not None and len(found_set) == 0:  # type: ignore[arg-type]
            raise TrainError(f"{config.dataset_name}: no examples for `{objective.name}` in split {split!r}")
    skipped = "".join(f"; skipped {n} {why}" for why, n in sorted(getattr(dataset, "skipped", {}).items()))
    if eval_set is None and config.eval_fraction:
        dataset, eval_set = holdout(dataset, config.eval_fraction, config.seed)
    accelerator.print(f"{objective.name}: training on {len(dataset)} {objective.unit}{skipped}")  # type: ignore[arg-type]
    eval_steps = config.eval_steps or config.logging_steps
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainError(f"`{objective.name}`: the model has no trainable parameters")
    loader = DataLoader(
        dataset,
        batch_size=config.per_device_train_batch_size,
        shuffle=True,
        collate_fn=objective.collate,
        generator=torch.Generator().manual_seed(config.seed),
    )
    optimizer = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / config.gradient_accumulation_steps)
    total = config.max_steps if config.max_steps > 0 else math.ceil(config.num_train_epochs * steps_per_epoch)
    scheduler = get_scheduler(config.lr_scheduler_type, optimizer, config.warmup_steps, total)
    # before the state is restored: what prepare computes (e.g. reference log-probs) is of the initial model
    objective.prepare(model, loader, accelerator)

    step, history = 0, None
    found = resume_point(config.resume_from_checkpoint, out)
    if config.resume_from_checkpoint and found is None:
        accelerator.print(f"resume_from_checkpoint: no checkpoint in {out}; starting from step 0")
    if found is not None:
        restore_state(found, accelerator, model, optimizer, scheduler)
        resumed = read_state(found)
        step, history = resumed["step"], resumed.get("log_history")
        accelerator.print(f"resuming from {found} (step {step})")

    report_to = config.report_to or "none"
    logger = MetricsLogger(out, total, step, objective.progress_metrics, report_to, history, enabled=main)

    def state(step: int) -> dict[str, Any]:
        """trainer_state.json: where the run is, its settings and its log history (as transformers' Trainer)."""
        return {
            "step": step,
            "epoch": step / steps_per_epoch,
            "objective": objective.name,
            "max_steps": total,
            "num_train_epochs": config.num_train_epochs,
            "logging_steps": config.logging_steps,
            "eval_steps": eval_steps if eval_set is not None else None,
            "save_steps": config.save_steps,
            "train_batch_size": config.per_device_train_batch_size,
            "log_history": logger.history,
        }

    sums: dict[str, float] = defaultdict(float)
    micro, samples, started = 0, 0, time.perf_counter()
    epoch, skip = divmod(step, steps_per_epoch)
    model.train()
    while step < total:
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip * config.gradient_accumulation_steps) if skip else loader
        skip = 0
        for batch in batches:
            with accelerator.accumulate(model):
                with accelerator.autocast():
                    loss, metrics = objective.loss(model, batch)
                accelerator.backward(loss)
                if accelerator.sync_gradients and config.max_grad_norm > 0:
                    accelerator.clip_grad_norm_(params, config.max_grad_norm)
                optimizer.step()
                if accelerator.sync_gradients:
                    scheduler.step()
                optimizer.zero_grad()
            for key, value in {"loss": loss, **metrics}.items():
                sums[key] += float(value.detach())
            micro += 1
            samples += objective.batch_size(batch)
            if not accelerator.sync_gradients:
                continue
            step += 1
            logger.advance()
            if step % config.logging_steps == 0 or step == total:
                _log(accelerator, logger, sums, micro, samples, started, step, step / steps_per_epoch, scheduler)
                sums, micro, samples, started = defaultdict(float), 0, 0, time.perf_counter()
            if eval_set is not None and (step % eval_steps == 0 or step == total):
                _evaluate(objective, accelerator, model, eval_set, logger, step, step / steps_per_epoch)
            if config.save_steps and step % config.save_steps == 0 and step < total:
                save(objective, accelerator, model, out / f"checkpoint-{step}", state(step), (optimizer, scheduler))
                if main:
                    prune(out, config.save_total_limit)
            if step >= total:
                break
        epoch += 1
    logger.close()
    save(objective, accelerator, model, out, state(step))
    if main:
        plot_curves(logger.history, out / "curves.png", f"syngen train {objective.name}: {out.name}")
    if main and config.push_to_hub:
        accelerator.print(f"pushed: {push_model(out, config.hub_repo, private=config.hub_private_repo)}")
    accelerator.end_training()
    return out


def resume_point(spec: str | None, out: Path) -> Path | None:
    """The checkpoint ``resume_from_checkpoint`` names: None for None, the latest in ``out`` for ``true`` (None
    when there is none), else that folder. Raises :class:`ConfigError` for a folder that is no complete
    checkpoint."""
    if spec is None:
        return None
    if spec.lower() == "true":
        return latest_checkpoint(out)
    folder = Path(spec)
    if not (folder / "trainer_state.json").is_file():
        raise ConfigError(
            f"resume_from_checkpoint: {spec} is not a checkpoint (no trainer_state.json); give a "
            f"checkpoint-<step> folder, or true for the latest in output_dir"
        )
    return folder


def _evaluate(
    objective: Objective,
    accelerator: Accelerator,
    model: torch.nn.Module,
    eval_set: Any,
    logger: MetricsLogger,
    step: int,
    epoch: float,
) -> None:
    """Scores the model on ``eval_set`` on the main process (the others wait) and logs the ``eval/`` metrics."""
    if accelerator.is_main_process:
        model.eval()
        logger.log(step, epoch, objective.evaluate(accelerator.unwrap_model(model), eval_set))
        model.train()
    accelerator.wait_for_everyone()


def _log(
    accelerator: Accelerator,
    logger: MetricsLogger,
    sums: dict[str, float],
    micro: int,
    samples: int,
    started: float,
    step: int,
    epoch: float,
    scheduler: Any,
) -> None:
    """Averages the metrics over micro-batches and processes (a collective call) and hands them to the logger."""
    keys = sorted(sums)
    values = torch.tensor([sums[k] / max(micro, 1) for k in keys] + [samples], device=accelerator.device)
    values = accelerator.reduce(values, reduction="sum")
    metrics = {k: float(v) / accelerator.num_processes for k, v in zip(keys, values[:-1].tolist(), strict=True)}
    metrics["learning_rate"] = scheduler.get_last_lr()[0]
    metrics["samples_per_second"] = float(values[-1]) / max(time.perf_counter() - started, 1e-9)
    logger.log(step, epoch, metrics)


def save(
    objective: Objective,
    accelerator: Accelerator,
    model: torch.nn.Module,
    folder: Path,
    state: dict[str, Any],
    resumable: tuple[Any, Any] | None = None,
) -> None:
    """Saves a checkpoint into ``folder`` with the state to resume from (``resumable``: optimizer and scheduler),
    or without ``resumable`` the final model into the output folder ``folder``; both through a staging folder.
    ``state`` is its trainer_state.json.

    Every process must call it (each saves its own random states); the main process writes the folder.
    """
    staging = folder.with_name(f".{folder.name}.tmp") if resumable else folder / ".final.tmp"
    if accelerator.is_main_process:
        shutil.rmtree(staging, ignore_errors=True)
        (staging / "state" if resumable else staging).mkdir(parents=True)
    accelerator.wait_for_everyone()
    if resumable:
        save_state(staging / "state", accelerator, model, *resumable)
        accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        unwrapped = accelerator.unwrap_model(model)
        write_model_folder(
            folder, lambda path: objective.save(unwrapped, path), objective.config, state, objective.card(), staging
        )
    accelerator.wait_for_everyone()
