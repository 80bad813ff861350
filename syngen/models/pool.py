"""The runner's model pool: models stay loaded across waves while they fit a memory budget.

A stage asks the pool for its model; a model already resident is returned at once. A model that is not is
loaded, and the least recently used resident models are freed (with their GPU memory) until the resident ones
fit ``budget_bytes``. A model's size is estimated from its weight files before loading (so a GPU is not
over-filled while loading) and measured from its parameters after. The pool counts loads per model for the run
report.
"""

from __future__ import annotations

import gc
import os
import sys
from collections import Counter, OrderedDict
from pathlib import Path
from typing import Any, cast

from syngen.models.loading import backend_for, load, resolve
from syngen.refs import ModelRef
from syngen.threads import on_gpu

Key = tuple[str, str, str | None, str, str]  # backend, id, revision, dtype, load options and compile
_WEIGHTS = (".safetensors", ".bin", ".pth", ".pt", ".ckpt")


def device_memory_bytes(device: str) -> int:
    """What the device has: total GPU memory on cuda, total RAM on cpu."""
    if on_gpu(device):
        import torch

        return torch.cuda.get_device_properties(torch.device(device)).total_memory
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def adapter_bytes(adapter: Any) -> int:
    """Bytes of an adapter's parameters and buffers (its ``memory_bytes()``; 0 when it cannot tell)."""
    measure = getattr(adapter, "memory_bytes", None)
    return int(measure()) if callable(measure) else 0


def free_memory() -> None:
    """Collects what closed models left in reference cycles (costly: done once for all the models freed together;
    docs/benchmarks.md#figures-behind-the-code) and hands CUDA's cached blocks back to the device."""
    gc.collect()
    torch = sys.modules.get("torch")  # loaded models imported it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


def weights_bytes(path: Path) -> int:
    """Bytes of the weight files under a model folder (or of a single-file checkpoint)."""
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(f.stat().st_size for f in path.rglob("*") if f.suffix in _WEIGHTS and f.is_file())


class ModelPool:
    """Loaded adapters keyed by (backend, id, revision, dtype), least recently used first."""

    def __init__(self, device: str, dtype: str, budget_bytes: int, cache_limit: int = 64):
        self.device, self.dtype = device, dtype
        self.budget = budget_bytes
        self.cache_limit = cache_limit
        self.loads: Counter[str] = Counter()  # model id -> times loaded in this run
        self._resident: OrderedDict[Key, tuple[Any, int]] = OrderedDict()  # key -> (adapter, bytes)
        self._sizes: dict[Key, int] = {}  # measured sizes, kept after a model is freed

    def get(
        self,
        ref: ModelRef | None,
        default_backend: str | None,
        dtype: str | None = None,
        options: dict[str, Any] | None = None,
        compile: bool = False,
    ) -> tuple[Any, float]:
        """The adapter for ``ref`` in ``dtype`` (default: the run's) loaded with ``options`` (and torch-compiled),
        and the seconds spent loading it (0 when it was resident)."""
        if ref is None:
            return None, 0.0
        dtype, options = dtype or self.dtype, options or {}
        settings = repr(sorted(options.items()) + [("compile", compile)])
        key: Key = (backend_for(ref, default_backend), ref.id, ref.revision, dtype, settings)
        if key in self._resident:
            self._resident.move_to_end(key)
            return self._resident[key][0], 0.0
        self._fit(self._sizes.get(key) or _estimate(ref, dtype))
        adapter, seconds = load(ref, default_backend, self.device, dtype, **options)
        if compile:  # an Adapter method (base.Adapter.compile); not part of the role protocols
            cast(Any, adapter).compile()
        if hasattr(adapter, "cache_limit"):
            adapter.cache_limit = self.cache_limit
        size = adapter_bytes(adapter)
        self._sizes[key] = size
        self._fit(size)
        self._resident[key] = (adapter, size)
        self.loads[ref.id] += 1
        return adapter, seconds

    def free_others(self, adapter: Any) -> None:
        """Frees every resident model but ``adapter`` (after a CUDA out-of-memory error)."""
        self._free([key for key, (other, _) in self._resident.items() if other is not adapter])

    def resident_bytes(self) -> int:
        return sum(size for _, size in self._resident.values())

    def close(self) -> None:
        """Frees every model; collects what they left in reference cycles only on a GPU, whose memory the next
        user of this process needs back at once (on the CPU, Python's own collector gets to it, and the run does
        not wait for it)."""
        self._free(list(self._resident), collect=on_gpu(self.device))

    def _fit(self, incoming: int) -> None:
        """Frees least recently used models until ``incoming`` more bytes fit the budget."""
        evicted, kept = [], self.resident_bytes()
        for key, (_, size) in self._resident.items():
            if kept + incoming <= self.budget:
                break
            evicted.append(key)
            kept -= size
        self._free(evicted)

    def _free(self, keys: list[Key], collect: bool = True) -> None:
        """Closes the models under ``keys``, then (with ``collect``) returns their memory once."""
        for key in keys:
            adapter, _ = self._resident.pop(key)
            adapter.close()
        if keys and collect:
            free_memory()


def _estimate(ref: ModelRef, dtype: str) -> int:
    """A model's size before loading: its weight files, halved when loaded in 16 bits (checkpoints are often
    float32); 0 when the files cannot be found."""
    try:
        size = weights_bytes(resolve(ref))
    except Exception:  # a path the loader will report on; the measured size after loading takes over
        return 0
    return size // 2 if dtype in ("float16", "bfloat16") else size
