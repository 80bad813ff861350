"""Resolving model references to local folders (preflight), building tiny twins, and loading adapters.

``resolve`` turns a :class:`~syngen.refs.ModelRef` into a local folder: a tiny twin (built once and
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

from syngen.errors import PreflightError
from syngen.models import BACKENDS, backend_class
from syngen.models.roles import PROTOCOLS, Model
from syngen.models.twins import TINY, TINY_VERSION, builder
from syngen.refs import ModelRef


def cache_dir() -> Path:
    return Path(os.environ.get("SYNGEN_CACHE", Path.home() / ".cache" / "syngen"))


def backend_for(ref: ModelRef, default: str | None) -> str:
    """The backend a reference runs on: a tiny twin's own, else the ref's, else the stage's default."""
    if ref.tiny is not None:
        if ref.tiny not in TINY:
            raise PreflightError(f"unknown tiny twin {ref.id!r}; known: {', '.join('tiny:' + n for n in TINY)}")
        twin_backend = TINY[ref.tiny].backend
        if twin_backend is None:
            raise PreflightError(f"tiny twin {ref.id!r} is for the trainer only; no pipeline backend loads it")
        return twin_backend
    backend = ref.backend or default
    if backend not in BACKENDS:
        raise PreflightError(f"unknown backend {backend!r} for {ref.id!r}; known: {', '.join(BACKENDS)}")
    return backend


def build_tiny(name: str) -> Path:
    """The folder of tiny twin ``name``, built on first use (atomically: a killed build leaves no half folder)."""
    target = cache_dir() / "tiny" / f"{name}-v{TINY_VERSION}"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if target.exists():
            return target
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}-", dir=target.parent))
        try:
            builder(name)(tmp)
            tmp.rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve(ref: ModelRef) -> Path:
    """A local folder (or file, for single-file checkpoints) holding the model ``ref`` names."""
    if ref.tiny is not None:
        if ref.tiny not in TINY:
            backend_for(ref, None)  # raises, naming the known twins
        return build_tiny(ref.tiny)
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


def load(ref: ModelRef, default_backend: str | None, device: str, dtype: str, **options: Any) -> tuple[Model, float]:
    """Resolve and load the adapter for ``ref`` (``options``: the adapter's own load settings); returns it and the
    seconds loading took."""
    start = time.perf_counter()
    backend = backend_for(ref, default_backend)
    cls = backend_class(backend)
    spec = BACKENDS[backend]
    adapter: Model = cls(resolve(ref), device=device, dtype=dtype, trust_remote_code=ref.trust_remote_code, **options)
    for role in (spec.role, *spec.also):
        if not isinstance(adapter, PROTOCOLS[role]):
            raise TypeError(f"backend {backend!r} ({cls.__name__}) does not implement the {role} role's calls")
    return adapter, time.perf_counter() - start
