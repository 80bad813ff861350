"""What the trainer logs at step 1, against the objective's loss recomputed by the test on the same batch."""

from __future__ import annotations

import json
from typing import Any

import torch
from accelerate.utils import set_seed

from syngen.train.loop import train
from syngen.train.objective import Objective


def first_step(objective_class: type[Objective], config: Any) -> tuple[dict[str, float], Objective, Any, Any]:
    """Trains one step whose one batch holds the whole dataset; returns step 1's logged metrics and a fresh build
    of the same seed (the objective, its model before any update, and that batch), to recompute the loss from."""
    out = train(objective_class(config))
    logged = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    set_seed(config.seed)
    fresh = objective_class(config)
    model = fresh.build(torch.device("cpu"))
    dataset = fresh.dataset()
    batch = fresh.collate([dataset[i] for i in range(len(dataset))])  # type: ignore[arg-type]
    return logged, fresh, model, batch
