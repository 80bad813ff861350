"""The training metrics logger: a progress bar, ``metrics.jsonl``, the log history, and TensorBoard when asked.

Only the main process writes. Each record is ``{"step": N, "epoch": E, <metric>: value, ...}``: a line of
``metrics.jsonl`` and an entry of :attr:`MetricsLogger.history`, which checkpoints keep as ``trainer_state.json``'s
``log_history`` (as transformers' ``Trainer`` does). Training metrics and evaluation metrics (``eval/...``) are
separate records. On resume the history is the checkpoint's (or, for a checkpoint without one, the lines of
``metrics.jsonl`` up to the resumed step), and ``metrics.jsonl`` is rewritten from it, so the file reads as one
uninterrupted run. With ``report_to="tensorboard"`` each metric also goes to ``<output_dir>/runs/``: training
metrics as ``train/<name>``, evaluation metrics under their own ``eval/<name>``.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

log = logging.getLogger(__name__)


class MetricsLogger:
    """Writes metrics of optimizer steps; ``close()`` when training ends."""

    def __init__(
        self,
        out: Path,
        total_steps: int,
        start_step: int,
        show: tuple[str, ...],
        report_to: str = "none",
        history: list[dict[str, Any]] | None = None,
        enabled: bool = True,
    ) -> None:
        self.enabled = enabled
        self.show = show
        self.path = Path(out) / "metrics.jsonl"
        self.history: list[dict[str, Any]] = []
        self.bar = None
        self.tensorboard = None
        if not enabled:
            return
        self.history = [r for r in (self._read() if history is None else history) if r.get("step", 0) <= start_step]
        self.path.write_text("".join(json.dumps(record) + "\n" for record in self.history), encoding="utf-8")
        self.bar = tqdm(total=total_steps, initial=start_step, desc="train", dynamic_ncols=True)
        if report_to == "tensorboard":
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as err:  # checked with the config; a broken install still must not stop training
                log.warning(f"report_to tensorboard: cannot import it ({err}); metrics go to metrics.jsonl only")
            else:
                self.tensorboard = SummaryWriter(str(Path(out) / "runs"), purge_step=start_step or None)

    def _read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        lines = self.path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines if line.strip()]

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
        self.history.append(record)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(record) + "\n")
        if self.tensorboard is not None:
            for key, value in metrics.items():
                self.tensorboard.add_scalar(key if key.startswith("eval/") else f"train/{key}", value, step)
        if self.bar is not None:
            self.bar.set_postfix({k: f"{metrics[k]:.4g}" for k in self.show if k in metrics}, refresh=False)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        if self.tensorboard is not None:
            self.tensorboard.close()
