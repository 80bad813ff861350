"""The objective interface: what a training objective gives the shared loop (:func:`syngen.train.loop.train`).

An objective is one class per training method (``sft``, ``dpo``, ``amc``). The loop owns everything else:
devices and data parallelism (accelerate), mixed precision, gradient accumulation, the optimizer and schedule,
logging, checkpoints, ``--resume`` and ``--push-to-hub``. The loop calls, in this order:

1. ``build(device)`` -> the trainable ``torch.nn.Module`` (what the optimizer sees and checkpoints hold);
   frozen parts may live inside it (``requires_grad=False``) or on the objective itself.
2. ``dataset(split=None)`` -> a map-style dataset of items of ``split`` (default: the training split; the loop
   also asks for ``dataset_test_split``); ``collate(items)`` -> one batch (any structure);
   ``batch_size(batch)`` -> its number of samples.
3. ``prepare(model, loader, accelerator)`` once, after ``accelerator.prepare`` and, on ``--resume``, before the
   checkpoint's state is restored, so it sees the initial model (e.g. precompute reference log-probabilities).
   Optional.
4. ``loss(model, batch)`` each micro-batch -> ``(loss, metrics)``: a scalar tensor to back-propagate and a
   dict of scalar tensors to log (averaged over micro-batches, logging steps and processes).
5. ``save(model, folder)`` -> writes the model so that its class's ``from_pretrained(folder)`` reads it
   (safetensors weights + JSON config + any tokenizer/processor). The loop adds ``training_config.json``,
   ``trainer_state.json`` and the model card (``card()``: base models, tags, task) beside it.
6. ``evaluate(model, items)`` -> ``{"eval/<metric>": value}`` on an eval dataset (items as ``dataset`` gives
   them), on the main process, every ``eval_steps`` and at the end, when the run has an eval split. Optional.

``model`` as passed to ``loss`` may be wrapped by accelerate (DDP); ``accelerator.unwrap_model`` gives the
module back. The objective's config is a :class:`~syngen.train.config.TrainConfig` subclass.
"""

from __future__ import annotations

from typing import Any

import torch
from accelerate import Accelerator

from syngen.train.config import TrainConfig


class Objective:
    """Base class of training objectives; see the module docstring for the contract."""

    name: str = ""
    config_class: type[TrainConfig] = TrainConfig
    progress_metrics: tuple[str, ...] = ("loss",)  # shown on the progress bar

    def __init__(self, config: TrainConfig):
        self.config = config

    def build(self, device: torch.device) -> torch.nn.Module:
        raise NotImplementedError

    def dataset(self, split: str | None = None) -> torch.utils.data.Dataset:
        raise NotImplementedError

    def collate(self, items: list[Any]) -> Any:
        return items

    def batch_size(self, batch: Any) -> int:
        """Samples in a batch (for samples/s); ``len(batch)`` by default."""
        return len(batch)

    def prepare(self, model: torch.nn.Module, loader: Any, accelerator: Accelerator) -> None:
        """Hook run once before the first step; nothing by default."""

    def loss(self, model: torch.nn.Module, batch: Any) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        raise NotImplementedError

    def save(self, model: torch.nn.Module, folder: Any) -> None:
        raise NotImplementedError

    def evaluate(self, model: torch.nn.Module, items: torch.utils.data.Dataset) -> dict[str, float]:
        """``eval/`` metrics of the (unwrapped, eval-mode) ``model`` on ``items``; none by default."""
        return {}

    def card(self) -> dict[str, Any]:
        """Model-card facts: ``base_models`` (list of ids), ``tags``, ``description``, ``task`` (a Hub task id)."""
        return {}
