"""The SAM trainer's policies by name (the ``policy`` option of ``sft`` and ``dpo``), and loading a saved one.

- ``text-promptable-sam``: :class:`~syngen.train.policy.TextPromptableSam`, a prompter trained from scratch on a
  frozen CLIP text encoder and SAM's mask decoder (new from ``sam_model_name_or_path`` and
  ``text_encoder_name_or_path``);
- ``sam3``: :class:`~syngen.train.sam3_policy.Sam3Policy`, SAM 3 itself (new from a SAM 3 checkpoint given as
  ``model_name_or_path``).

A saved policy (a ``syngen train`` output folder or Hub id) is loaded as the class that saved it, whatever
``policy`` says: its ``config.json`` names it by its init argument (``sam_config`` or ``sam3_config``).
"""

from __future__ import annotations

import json
from typing import Any

import torch

from syngen.errors import ConfigError
from syngen.train.policy import TextPromptableSam
from syngen.train.sam3_policy import Sam3Policy

Policy = TextPromptableSam | Sam3Policy
POLICIES: dict[str, type[TextPromptableSam] | type[Sam3Policy]] = {
    "text-promptable-sam": TextPromptableSam,
    "sam3": Sam3Policy,
}


def saved_policy(path: str) -> type[TextPromptableSam] | type[Sam3Policy] | None:
    """The policy class that saved ``path`` (local folder, Hub id or ``tiny:`` twin), or None when ``path`` is no
    saved syngen policy (e.g. a SAM 3 checkpoint)."""
    config = TextPromptableSam.locate(path) / "config.json"  # a missing path: one paragraph naming it, exit 2
    saved = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
    return next((cls for cls in POLICIES.values() if cls.config_key in saved), None)


def load_policy(path: str, device: str | torch.device = "cpu") -> Policy:
    """The saved policy ``path`` on ``device``; raises :class:`ConfigError` when ``path`` is no saved policy."""
    cls = saved_policy(path)
    if cls is None:
        raise ConfigError(
            f"{path}: not a syngen policy checkpoint (its config.json names no {' or '.join(POLICIES)} policy); "
            "give the output folder of `syngen train sft` or `syngen train dpo`"
        )
    return cls.load(path, device)


def start_policy(name: str, path: str, **options: Any) -> Policy:
    """The policy a run starts from: the saved policy ``path``, else a new ``name`` policy from the base checkpoint
    ``path`` (``options``: that class's ``from_base`` settings)."""
    cls = saved_policy(path)
    return cls.load(path) if cls is not None else POLICIES[name].from_base(path, **options)
