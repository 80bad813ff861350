"""The one training loop (accelerate): any :class:`~syngen.train.objective.Objective` on CPU, one GPU or several.

``train(objective)`` runs ``config.max_steps`` optimizer steps (or ``config.epochs`` passes), with gradient
accumulation, mixed precision and data parallelism from accelerate (start several processes with
``accelerate launch``; each process sees a disjoint share of every epoch's batches). It logs through
:class:`~syngen.train.logger.MetricsLogger`, saves ``<out>/checkpoint-<step>/`` every ``save_steps`` (see
:mod:`syngen.train.checkpoint`), writes the final model into ``<out>/`` and pushes it when asked.
With ``config.resume`` it continues from the last complete checkpoint, reproducing the uninterrupted run.
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

from syngen.errors import TrainError
from syngen.train.checkpoint import checkpoints, prune, push_model, read_state, write_model_folder
from syngen.train.logger import MetricsLogger
from syngen.train.objective import Objective


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
    out = Path(config.out)
    accelerator = make_accelerator(config.cpu, config.mixed_precision, config.grad_accum)
    main = accelerator.is_main_process
    if main:
        out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    # the main process first: it builds tiny twins and dataset caches (transformers' save_pretrained writes
    # weights only on rank 0), the others then read them
    with accelerator.main_process_first():
        model = objective.build(accelerator.device)
        dataset = objective.dataset()
    skipped = "".join(f"; skipped {n} {why}" for why, n in sorted(getattr(dataset, "skipped", {}).items()))
    accelerator.print(f"{objective.name}: training on {len(dataset)} {objective.unit}{skipped}")  # type: ignore[arg-type]
    if len(dataset) == 0:  # type: ignore[arg-type]
        raise TrainError(f"{config.data}: no training examples for `{objective.name}` in split {config.split!r}")
    params = [p for p in model.parameters() if p.requires_grad]
    if not params:
        raise TrainError(f"`{objective.name}`: the model has no trainable parameters")
    loader = DataLoader(
        dataset,
        batch_size=config.batch_size,
        shuffle=True,
        collate_fn=objective.collate,
        generator=torch.Generator().manual_seed(config.seed),
    )
    optimizer = torch.optim.AdamW(params, lr=config.lr, weight_decay=config.weight_decay)
    model, optimizer, loader = accelerator.prepare(model, optimizer, loader)
    steps_per_epoch = math.ceil(len(loader) / config.grad_accum)
    total = config.max_steps or config.epochs * steps_per_epoch
    scheduler = get_scheduler(config.scheduler, optimizer, config.warmup_steps, total)
    accelerator.register_for_checkpointing(scheduler)

    step = 0
    if config.resume:
        found = checkpoints(out)
        if found:
            accelerator.load_state(str(found[-1] / "state"))
            step = read_state(found[-1])["step"]
            accelerator.print(f"resuming from {found[-1]} (step {step})")
        else:
            accelerator.print(f"--resume: no checkpoint in {out}; starting from step 0")
    objective.prepare(model, loader, accelerator)

    logger = MetricsLogger(out, total, step, objective.progress_metrics, enabled=main)
    sums: dict[str, float] = defaultdict(float)
    micro, samples, started = 0, 0, time.perf_counter()
    epoch, skip = divmod(step, steps_per_epoch)
    model.train()
    while step < total:
        loader.set_epoch(epoch)
        batches = accelerator.skip_first_batches(loader, skip * config.grad_accum) if skip else loader
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
            if step % config.log_steps == 0 or step == total:
                _log(accelerator, logger, sums, micro, samples, started, step, step / steps_per_epoch, scheduler)
                sums, micro, samples, started = defaultdict(float), 0, 0, time.perf_counter()
            if config.save_steps and step % config.save_steps == 0 and step < total:
                save(objective, accelerator, model, out / f"checkpoint-{step}", step, step / steps_per_epoch)
                if main:
                    prune(out, config.save_total_limit)
            if step >= total:
                break
        epoch += 1
    logger.close()
    save(objective, accelerator, model, out, step, step / steps_per_epoch, final=True)
    if main and config.push_to_hub:
        accelerator.print(f"pushed: {push_model(out, config.push_to_hub, private=config.private)}")
    accelerator.end_training()
    return out


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
    step: int,
    epoch: float,
    final: bool = False,
) -> None:
    """Saves a checkpoint (with accelerate's resumable state) or, with ``final``, the final model into ``folder``.

    Every process must call it (saving the state is collective); the main process writes the folder.
    """
    state = {"step": step, "epoch": epoch, "objective": objective.name}
    unwrapped = accelerator.unwrap_model(model)
    staging = None
    if not final:
        staging = folder.with_name(f".{folder.name}.tmp")
        if accelerator.is_main_process:
            shutil.rmtree(staging, ignore_errors=True)
        accelerator.wait_for_everyone()
        accelerator.save_state(str(staging / "state"))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        write_model_folder(
            folder, lambda path: objective.save(unwrapped, path), objective.config, state, objective.card(), staging
        )
    accelerator.wait_for_everyone()
