"""Resolving model references to local folders (preflight), building tiny twins, and loading adapters.

``resolve`` turns a :class:`~syngen.stages.base.ModelRef` into a local folder: a tiny twin (built once and
cached under ``$SYNGEN_CACHE`` or ``~/.cache/syngen``), a local path, or a Hub snapshot (from the local cache,
downloaded when the Hub is reachable). A model that is none of these raises :class:`PreflightError` naming it
and saying how to fetch it, before any compute.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from filelock import FileLock

from syngen.models import BACKENDS, TINY, backend_class
from syngen.stages.base import ModelRef

TINY_PREFIX = "tiny:"
TINY_VERSION = "2"  # bump when a twin's architecture or tokenizer changes, so caches rebuild


class PreflightError(RuntimeError):
    """A model of the recipe cannot be resolved."""


def cache_dir() -> Path:
    return Path(os.environ.get("SYNGEN_CACHE", Path.home() / ".cache" / "syngen"))


def backend_for(ref: ModelRef, default: str | None) -> str:
    """The backend a reference runs on: a tiny twin's own, else the ref's, else the stage's default."""
    if ref.id.startswith(TINY_PREFIX):
        name = ref.id[len(TINY_PREFIX) :]
        if name not in TINY:
            raise PreflightError(f"unknown tiny twin {ref.id!r}; known: {', '.join('tiny:' + n for n in TINY)}")
        return TINY[name][0]
    backend = ref.backend or default
    if backend not in BACKENDS:
        raise PreflightError(f"unknown backend {backend!r} for {ref.id!r}; known: {', '.join(BACKENDS)}")
    return backend


def build_tiny(name: str) -> Path:
    """The folder of tiny twin ``name``, built on first use (atomically: a killed build leaves no half folder)."""
    backend, variant = TINY[name]
    target = cache_dir() / "tiny" / f"{name}-v{TINY_VERSION}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            backend_class(backend).build_tiny(variant, tmp)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(ref: ModelRef) -> Path:
    """A local folder (or file, for single-file checkpoints) holding the model ``ref`` names."""
    if ref.id.startswith(TINY_PREFIX):
        backend_for(ref, None)
        return build_tiny(ref.id[len(TINY_PREFIX) :])
    local = Path(ref.id).expanduser()
    if local.exists():
        return local
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref.id, revision=ref.revision, local_files_only=True))
    except Exception:
        pass
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        raise PreflightError(_fetch_hint(ref, "it is not in the local Hugging Face cache and HF_HUB_OFFLINE is set"))
    try:
        return Path(snapshot_download(ref.id, revision=ref.revision))
    except Exception as err:  # no network, gated repo, typo
        raise PreflightError(_fetch_hint(ref, f"it could not be downloaded ({type(err).__name__}: {err})")) from None


def _fetch_hint(ref: ModelRef, why: str) -> str:
    rev = f" --revision {ref.revision}" if ref.revision else ""
    return (
        f"model {ref.id!r} is not available: {why}. Fetch it on a machine with network with "
        f"`hf download {ref.id}{rev}` (then copy the Hugging Face cache, or set HF_HOME to it), "
        f"or point the recipe at a local folder, or use a tiny twin (tiny:<name>) for a dry run."
    )


def load(ref: ModelRef, default_backend: str | None, device: str, dtype: str, **options: Any) -> tuple[Any, float]:
    """Resolve and load the adapter for ``ref`` (``options``: the adapter's own load settings); returns it and the
    seconds loading took."""
    start = time.perf_counter()
    cls = backend_class(backend_for(ref, default_backend))
    adapter = cls(resolve(ref), device=device, dtype=dtype, trust_remote_code=ref.trust_remote_code, **options)
    return adapter, time.perf_counter() - start
