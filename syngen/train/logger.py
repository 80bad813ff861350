"""The training metrics logger: a progress bar with the key metrics, ``metrics.jsonl``, and TensorBoard if installed.

Only the main process writes. Each line of ``metrics.jsonl`` is ``{"step": N, "epoch": E, <metric>: value, ...}``;
on ``--resume`` lines past the resumed step are dropped first, so the file reads as one uninterrupted run.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm


class MetricsLogger:
    """Writes metrics of optimizer steps; ``close()`` when training ends."""

    def __init__(
        self, out: Path, total_steps: int, start_step: int, show: tuple[str, ...], enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self.show = show
        self.path = Path(out) / "metrics.jsonl"
        self.bar = None
        self.tensorboard = None
        if not enabled:
            return
        self._truncate(start_step)
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True)
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tensorboard = SummaryWriter(str(Path(out) / "runs"), purge_step=start_step or None)
        except ImportError:  # tensorboard not installed
            self.tensorboard = None

    def _truncate(self, start_step: int) -> None:
        if not self.path.exists():
            return
        lines = self.path.read_text(encoding="utf-8").splitlines()
        kept = [line for line in lines if line.strip() and json.loads(line).get("step", 0) <= start_step]
        self.path.write_text("".join(line + "\n" for line in kept), encoding="utf-8")

    def advance(self, steps: int = 1) -> None:
        """Moves the progress bar by optimizer steps."""
        if self.bar is not None:
            self.bar.update(steps)

    def log(self, step: int, epoch: float, metrics: dict[str, float]) -> None:
        """Records ``metrics`` at optimizer step ``step``."""
        if not self.enabled:
            return
        record: dict[str, Any] = {"step": step, "epoch": round(epoch, 4)}
        record.update({k: (v if math.isfinite(v) else str(v)) for k, v in metrics.items()})
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in metrics.items():
                self.tensorboard.add_scalar(f"train/{key}", value, step)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{metrics[k]:.4g}" for k in self.show if k in metrics}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
