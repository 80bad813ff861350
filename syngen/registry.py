"""The one lazy import behind syngen's registries: a ``"module:name"`` string to the object it names."""

from __future__ import annotations

import importlib
from typing import Any


def load_target(target: str) -> Any:
    """The attribute ``name`` of module ``module`` for ``target`` = ``"module:name"``, importing the module now
    (so a registry line costs nothing until it is used)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
