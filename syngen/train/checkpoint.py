"""The checkpoint format: a folder that the model class's ``from_pretrained`` reads, plus the training facts.

``<out>/checkpoint-<step>/`` (intermediate) and ``<out>/`` itself (the final model) each hold:

- what the objective's ``save`` writes: safetensors weights, ``config.json``, tokenizer/processor files;
- ``training_config.json``: the options the run used;
- ``trainer_state.json``: ``{"step", "epoch", "objective", ...}`` with ``log_history`` (every logged record);
- ``README.md``: a model card naming the base checkpoints, the dataset and the final eval metrics.

Intermediate checkpoints also hold ``state/`` (:mod:`syngen.train.state`: optimizer, scheduler and RNG states as
safetensors and JSON, never a pickle) for a resume. Every folder is written in a staging folder, each file
fsync'ed, ``trainer_state.json`` last (its presence marks a folder complete), then swapped in, so a kill while
saving never leaves a half checkpoint that a resume would pick.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCardData

from syngen.errors import PushError
from syngen.hub import push_failure

log = logging.getLogger(__name__)

_CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
TRAINER_STATE = "trainer_state.json"


def checkpoints(out: Path) -> list[Path]:
    """The complete intermediate checkpoints in ``out`` (those with ``trainer_state.json``), oldest step first."""
    return [p for p in _by_step(out) if (p / TRAINER_STATE).is_file()]


def latest_checkpoint(out: Path) -> Path | None:
    """The complete checkpoint in ``out`` with the highest step, or None; newer ones without
    ``trainer_state.json`` (a save that never finished) are skipped with a warning naming them."""
    for folder in reversed(_by_step(out)):
        if (folder / TRAINER_STATE).is_file():
            return folder
        log.warning("%s: no %s (its save did not finish); skipped", folder, TRAINER_STATE)
    return None


def _by_step(out: Path) -> list[Path]:
    """The ``checkpoint-<step>`` folders in ``out``, by step number (checkpoint-9 before checkpoint-10)."""
    if not Path(out).is_dir():
        return []
    steps = {p: _CHECKPOINT.match(p.name) for p in Path(out).iterdir() if p.is_dir()}
    return sorted((p for p, m in steps.items() if m), key=lambda p: int(steps[p].group(1)))  # type: ignore[union-attr]


def read_state(folder: Path) -> dict[str, Any]:
    """A checkpoint's ``trainer_state.json``."""
    return json.loads((Path(folder) / TRAINER_STATE).read_text(encoding="utf-8"))


def write_model_folder(
    folder: Path,
    save_model: Callable[[Path], None],
    config: Any,
    state: dict[str, Any],
    card: dict[str, Any],
    staging: Path,
) -> Path:
    """Writes a model folder through ``staging`` (which may already hold ``state/``): ``save_model(staging)``,
    ``training_config.json`` and the card, then, once every file is fsync'ed, ``trainer_state.json``.

    Then ``staging`` takes ``folder``'s place. A checkpoint's staging folder (beside it) is renamed to ``folder``
    (an existing one is replaced). A staging folder inside ``folder`` (the final model, which shares the output
    folder with checkpoints and metrics) has its files moved in, ``folder``'s old ``trainer_state.json`` removed
    first and the new one moved last, so ``folder`` never shows a ``trainer_state.json`` beside other weights.
    """
    folder, staging = Path(folder), Path(staging)
    staging.mkdir(parents=True, exist_ok=True)
    save_model(staging)
    (staging / "training_config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2), encoding="utf-8")
    (staging / "README.md").write_text(model_card(config, state, card), encoding="utf-8")
    for path in sorted(staging.rglob("*")):
        fsync(path)
    write_trainer_state(staging, state)
    if staging.parent == folder:
        _move_into(staging, folder)
    else:
        shutil.rmtree(folder, ignore_errors=True)
        staging.rename(folder)
        fsync(folder.parent)
    return folder


def write_trainer_state(folder: Path, state: dict[str, Any]) -> None:
    """Writes and fsyncs ``folder/trainer_state.json``: the last file of a save, marking the folder complete."""
    path = Path(folder) / TRAINER_STATE
    path.write_text(json.dumps(state, indent=2), encoding="utf-8")
    fsync(path)
    fsync(folder)


def _move_into(staging: Path, folder: Path) -> None:
    """Moves ``staging``'s entries into ``folder``: the old ``trainer_state.json`` out first, the new one last."""
    (folder / TRAINER_STATE).unlink(missing_ok=True)
    fsync(folder)
    for entry in sorted(staging.iterdir(), key=lambda p: p.name == TRAINER_STATE):
        if entry.name == TRAINER_STATE:
            fsync(folder)  # every other entry is in place before the folder is marked complete
        target = folder / entry.name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(entry, target)
    fsync(folder)
    staging.rmdir()


def fsync(path: Path) -> None:
    """Flushes a file, or a folder's entries (so that a rename in it survives a power loss), to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune(out: Path, keep: int) -> None:
    """Deletes all but the ``keep`` newest intermediate checkpoints (``keep`` = 0 keeps all)."""
    if keep > 0:
        for old in checkpoints(out)[:-keep]:
            shutil.rmtree(old, ignore_errors=True)


def model_card(config: Any, state: dict[str, Any], card: dict[str, Any]) -> str:
    """The README.md of a checkpoint: Hub metadata and how it was trained.

    The metadata names ``base_model`` (the base checkpoints that are Hub ids), ``datasets`` (``dataset_name``: a
    path or a Hub id) and, when the run evaluated, the last ``eval/`` metrics of ``state["log_history"]`` as a
    ``model-index`` entry (task ``card["task"]``, dataset ``dataset_name``, split ``dataset_test_split`` or
    ``held-out``).
    """
    base = [m for m in card.get("base_models", []) if _looks_like_hub_id(str(m))]
    scores = final_eval(state.get("log_history", []))
    name = config.hub_model_id or Path(config.output_dir).name or "syngen"
    split = config.dataset_test_split or f"held-out {config.eval_fraction:g} of {config.dataset_train_split}"
    results = [
        EvalResult(
            task_type=card.get("task", "image-segmentation"),
            dataset_type=config.dataset_name,
            dataset_name=Path(config.dataset_name.rstrip("/")).name or config.dataset_name,
            dataset_split=split,
            metric_type=metric,
            metric_name=metric,
            metric_value=value,
        )
        for metric, value in scores.items()
    ]
    data = ModelCardData(
        library_name="syngen",
        tags=["syngen", *card.get("tags", [])],
        base_model=base or None,
        datasets=[config.dataset_name],
        model_name=name if results else None,
        eval_results=results or None,
    )
    options = "\n".join(f"- `{k}`: `{v}`" for k, v in dataclasses.asdict(config).items())
    evaluated = (
        f"Evaluated on `{config.dataset_name}` ({split}) at step {state.get('step', 0)}: "
        + ", ".join(f"{metric} {value:.4f}" for metric, value in scores.items())
        + ".\n\n"
        if scores
        else ""
    )
    text = (
        f"---\n{data.to_yaml()}\n---\n\n# {state.get('objective', 'syngen')} checkpoint\n\n"
        f"{card.get('description', '')}\n\n"
        f"Trained with `syngen train {state.get('objective', '')}` on `{config.dataset_name}` "
        f"(split `{config.dataset_train_split}`) "
        f"for {state.get('step', 0)} optimizer steps ({state.get('epoch', 0):.2f} epochs).\n\n"
        f"{evaluated}"
        f"Base checkpoints: {', '.join(f'`{m}`' for m in card.get('base_models', [])) or 'none'}.\n\n"
        f"## Training options\n\n{options}\n"
    )
    return text


def final_eval(history: list[dict[str, Any]]) -> dict[str, float]:
    """The last logged ``eval/`` metrics of a log history, without the prefix (``{"mIoU": 0.61, ...}``)."""
    for record in reversed(history):
        scores = {
            k.removeprefix("eval/"): float(v)
            for k, v in record.items()
            if k.startswith("eval/") and isinstance(v, int | float)
        }
        if scores:
            return scores
    return {}


def _looks_like_hub_id(data: str) -> bool:
    return bool(re.fullmatch(r"[\w.-]+/[\w.-]+", data)) and not Path(data).exists()


def push_model(folder: Path, repo_id: str, *, private: bool = False) -> str:
    """Uploads a model folder (without intermediate checkpoints and logs) to the Hub model repo ``repo_id``.

    The token comes from huggingface_hub's usual places (``HF_TOKEN``, `hf auth login`); a failure raises
    :class:`~syngen.errors.PushError` with a message that is safe to print.
    """
    from huggingface_hub import HfApi

    api = HfApi()
    try:
        url = str(api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True))
        api.upload_folder(
            repo_id=repo_id,
            folder_path=folder,
            repo_type="model",
            ignore_patterns=[
                "checkpoint-*",
                "checkpoint-*/**",
                "runs/**",
                "metrics.jsonl",
                "embeddings/**",
                "inspect/**",
                ".*",
            ],
            commit_message="Upload model trained with syngen",
        )
    except Exception as error:
        raise PushError(push_failure(error, repo_id, "model")) from None
    return url
