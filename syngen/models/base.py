"""What every model adapter shares: loading arguments, device and dtype, timing of model calls, freeing memory.

An adapter is one class per backend, constructed from a resolved local folder (a Hub snapshot or a tiny twin),
exposing one batch call for its role (the Protocols of :mod:`syngen.models.roles`). Tiny twins are built in
:mod:`syngen.models.twins`.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Concatenate, ParamSpec, TypeVar

import torch

from syngen.threads import on_gpu

P = ParamSpec("P")
R = TypeVar("R")
A = TypeVar("A", bound="Adapter")

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


def resolve_dtype(name: str, device: str) -> str:
    """A dtype name, ``auto`` resolved: bfloat16 on GPUs that support it, float16 on older GPUs, float32 on CPU."""
    if name != "auto":
        return name
    if not on_gpu(device):
        return "float32"
    return "bfloat16" if torch.cuda.is_bf16_supported() else "float16"


def timed(method: Callable[Concatenate[A, P], R]) -> Callable[Concatenate[A, P], R]:
    """Adds the wall time of a model call to ``self.model_seconds`` (reported as time inside model calls) and this
    thread's CPU time in it to ``self.model_cpu_seconds`` (benchmarks/overhead.py parts the wrapper's pre- and
    post-processing from the forward pass with it)."""

    @functools.wraps(method)
    def wrapper(self: A, /, *args: P.args, **kwargs: P.kwargs) -> R:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            with torch.inference_mode():
                return method(self, *args, **kwargs)
        finally:
            self.model_seconds += time.perf_counter() - start
            self.model_cpu_seconds += time.thread_time() - cpu

    return wrapper


class Adapter:
    """Base adapter. Subclasses load in ``__init__`` and decorate their batch call with :func:`timed`."""

    def __init__(self, path: str | Path, device: str = "cpu", dtype: str = "float32", trust_remote_code: bool = False):
        self.path = str(path)
        self.device = torch.device(device)
        self.dtype = DTYPES[dtype]
        self.trust_remote_code = trust_remote_code
        self.model_seconds = 0.0
        self.model_cpu_seconds = 0.0

    def image_kwargs(self, processor: Any) -> dict[str, Any]:
        """Extra arguments for a call of ``processor`` on images: ``device`` where the model is on a GPU and the
        image processor is torchvision-backed (what transformers picks where torchvision imports), so that images
        are resized and normalised on the GPU instead of the CPU; none otherwise."""
        from transformers.image_processing_backends import TorchvisionBackend  # only adapters need transformers

        image_processor = getattr(processor, "image_processor", processor)
        if on_gpu(self.device) and isinstance(image_processor, TorchvisionBackend):
            return {"device": self.device}
        return {}

    def compile(self) -> None:
        """``torch.compile`` the adapter's modules in place (a diffusers pipeline's denoiser)."""
        for value in list(vars(self).values()):
            if isinstance(value, torch.nn.Module):
                value.compile()
            for name in ("unet", "transformer"):
                module = getattr(value, name, None) if hasattr(value, "components") else None
                if isinstance(module, torch.nn.Module):
                    module.compile()

    def memory_bytes(self) -> int:
        """Bytes of the parameters and buffers of the adapter's modules (a diffusers pipeline's components too)."""
        tensors: dict[int, torch.Tensor] = {}
        for value in vars(self).values():
            parts = getattr(value, "components", {}).values() if not isinstance(value, torch.nn.Module) else [value]
            for module in parts:
                if isinstance(module, torch.nn.Module):
                    tensors |= {id(t): t for t in (*module.parameters(), *module.buffers())}
        return sum(t.numel() * t.element_size() for t in tensors.values())

    def close(self) -> None:
        """Drop the model's modules (the model pool then returns their memory, once for several models)."""
        for name in list(vars(self)):
            if isinstance(getattr(self, name), torch.nn.Module) or name in ("model", "pipe", "processor"):
                setattr(self, name, None)
