"""A checkpoint's ``state/`` folder: what ``resume_from_checkpoint`` restores, written without a single pickle.

accelerate's ``save_state`` pickles the RNG states (``random_states_N.pkl``) and registered objects such as the
LR scheduler (``custom_checkpoint_N.pkl``) and loads them with ``weights_only=False``, so a checkpoint from
elsewhere could run code on resuming. syngen writes instead (tensors as safetensors, the rest as JSON):

- ``model.safetensors``: the trainable module's weights, frozen parts included (main process);
- ``optimizer.safetensors``: the optimizer's per-parameter tensors; its other fields (param groups, non-tensor
  values) as JSON in the file's metadata (main process; data-parallel ranks hold the same state);
- ``scheduler.json``: the LR scheduler's ``state_dict`` and the fp16 gradient scaler's (main process);
- ``rng-<rank>.safetensors``: each process's torch (and CUDA) generator states, Python's and NumPy's as JSON
  metadata.

:func:`check_resumable` refuses a damaged checkpoint, or one holding any ``.pkl`` (those of accelerate's format
included), before anything is read from it.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate import Accelerator
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_model, save_file, save_model

from syngen.errors import TrainError
from syngen.train.checkpoint import fsync

MODEL = "model.safetensors"
OPTIMIZER = "optimizer.safetensors"
SCHEDULER = "scheduler.json"


def rng_file(rank: int) -> str:
    """The name of process ``rank``'s generator states in ``state/``."""
    return f"rng-{rank}.safetensors"


def save_state(folder: Path, accelerator: Accelerator, model: torch.nn.Module, optimizer: Any, scheduler: Any) -> None:
    """Writes the resumable state into ``folder`` (see the module docstring), each file fsync'ed.

    Every process calls it (each writes its own generator states) once ``folder`` exists.
    """
    folder = Path(folder)
    written = [folder / rng_file(accelerator.process_index)]
    _write(written[0], *_pack_rng())
    if accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), str(folder / MODEL), force_contiguous=True)
        _write(folder / OPTIMIZER, *_pack_optimizer(optimizer.state_dict()))
        scaler = accelerator.scaler.state_dict() if accelerator.scaler is not None else {}
        saved = {"lr_scheduler": scheduler.state_dict(), "grad_scaler": scaler}
        (folder / SCHEDULER).write_text(json.dumps(saved), encoding="utf-8")
        written += [folder / MODEL, folder / OPTIMIZER, folder / SCHEDULER]
    for path in written:
        fsync(path)


def restore_state(
    checkpoint: Path, accelerator: Accelerator, model: torch.nn.Module, optimizer: Any, scheduler: Any
) -> None:
    """Restores what :func:`save_state` wrote into ``checkpoint/state``, after :func:`check_resumable`.

    Raises :class:`TrainError` naming the checkpoint when its state does not fit this run's model or options.
    """
    check_resumable(checkpoint, accelerator.process_index)
    folder = Path(checkpoint) / "state"
    try:
        # read on the CPU: loading copies the weights to the parameters' device and moves the optimizer state there
        load_model(accelerator.unwrap_model(model), str(folder / MODEL))
        optimizer.load_state_dict(_unpack_optimizer(*_read(folder / OPTIMIZER), optimizer))
        saved = json.loads((folder / SCHEDULER).read_text(encoding="utf-8"))
        scheduler.load_state_dict(saved["lr_scheduler"])
        if accelerator.scaler is not None and saved["grad_scaler"]:
            accelerator.scaler.load_state_dict(saved["grad_scaler"])
        _unpack_rng(*_read(folder / rng_file(accelerator.process_index)))
    except (SafetensorError, ValueError, KeyError, TypeError, RuntimeError) as err:  # JSON errors are ValueErrors
        why = " ".join(str(err).split())  # torch's mismatch report spans lines and lists every key
        raise TrainError(
            f"{checkpoint}: its saved state cannot be restored into this run ({why[:200]}). Resume with the options "
            "it was saved with (its training_config.json), or start a new run from its weights with "
            "`model_name_or_path`."
        ) from None


def check_resumable(checkpoint: Path, rank: int = 0) -> None:
    """Raises :class:`TrainError` (one paragraph naming the file) unless ``checkpoint`` can be resumed by process
    ``rank``: no ``.pkl`` anywhere in it, a ``state/`` folder with every file, no truncated safetensors file."""
    checkpoint = Path(checkpoint)
    instead = (
        f"To keep its training, start a new run from its weights instead: set `model_name_or_path` to {checkpoint} "
        "(without resuming)."
    )
    pickles = sorted(p.relative_to(checkpoint).as_posix() for p in checkpoint.rglob("*.pkl"))
    if pickles:
        raise TrainError(
            f"{checkpoint / pickles[0]}: this checkpoint holds a pickle ({', '.join(pickles)}), which can run any "
            "code when it is loaded, so syngen does not resume from it (checkpoints of syngen before this format "
            f"hold accelerate's pickles too). {instead}"
        )
    state = checkpoint / "state"
    if not state.is_dir():
        raise TrainError(
            f"{state}: no such folder; it holds the optimizer, scheduler and random states that resuming needs. "
            f"{instead}"
        )
    for name in (MODEL, OPTIMIZER, SCHEDULER, rng_file(rank)):
        if not (state / name).is_file():
            raise TrainError(
                f"{state / name}: missing, so this checkpoint cannot be resumed (a copy that lost files, or a run "
                f"saved with fewer processes than this one has). {instead}"
            )
    for path in sorted(checkpoint.rglob("*.safetensors")):
        try:
            with safe_open(str(path), "pt"):
                pass
        except (SafetensorError, OSError) as err:
            raise TrainError(f"{path}: truncated or damaged ({err}); this checkpoint cannot be resumed.") from None


def _write(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """A safetensors file of ``tensors`` with string ``metadata``."""
    save_file(tensors, str(path), metadata)


def _read(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """A safetensors file's tensors (on the CPU) and metadata."""
    with safe_open(str(path), "pt") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()  # noqa: SIM118 (safe_open is not iterable)


def _pack_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """An optimizer ``state_dict`` -> (tensors keyed ``<param index>.<name>``, metadata with the rest as JSON)."""
    tensors, values = {}, {}
    for index, entries in state["state"].items():
        for name, value in entries.items():
            if torch.is_tensor(value):
                tensors[f"{index}.{name}"] = value.detach().contiguous()
            else:
                values[f"{index}.{name}"] = value
    return tensors, {"param_groups": json.dumps(state["param_groups"]), "values": json.dumps(values)}


def _unpack_optimizer(tensors: dict[str, torch.Tensor], metadata: dict[str, str], optimizer: Any) -> dict[str, Any]:
    """The inverse of :func:`_pack_optimizer`; JSON lists become tuples where ``optimizer`` has tuples (betas)."""
    state: dict[int, dict[str, Any]] = defaultdict(dict)
    for key, value in [*tensors.items(), *json.loads(metadata["values"]).items()]:
        index, name = key.split(".", 1)
        state[int(index)][name] = value
    groups = [
        {k: tuple(v) if isinstance(current.get(k), tuple) else v for k, v in saved.items()}
        for saved, current in zip(json.loads(metadata["param_groups"]), optimizer.param_groups, strict=False)
    ]
    return {"state": dict(state), "param_groups": groups}


def _pack_rng() -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """This process's generator states: torch's (and each CUDA device's) as tensors, Python's and NumPy's as JSON."""
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        tensors.update({f"cuda.{i}": s for i, s in enumerate(torch.cuda.get_rng_state_all())})
    version, internal, gauss = random.getstate()
    numpy = np.random.get_state(legacy=False)
    numpy["state"]["key"] = numpy["state"]["key"].tolist()
    return tensors, {"python": json.dumps([version, list(internal), gauss]), "numpy": json.dumps(numpy)}


def _unpack_rng(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> None:
    """Sets the generator states :func:`_pack_rng` saved."""
    torch.set_rng_state(tensors["torch"])
    cuda = [tensors[f"cuda.{i}"] for i in range(len(tensors) - 1)]
    if cuda and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda)
    version, internal, gauss = json.loads(metadata["python"])
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state(json.loads(metadata["numpy"]))
