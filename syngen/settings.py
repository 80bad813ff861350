"""What every recipe section's pydantic model shares (a leaf module: it imports nothing of syngen).

:data:`STRICT` is their ``model_config``: no unknown keys; strict types, so a string is never a flag
(``trust_remote_code: "yes"`` is refused, not taken as true), a boolean never a number (``memory_budget: true``)
and a string never a number (``steps: "30"``); finite floats only (no ``.inf`` or ``.nan``). A field whose value
YAML can only give as a list but the model keeps as a tuple sets ``strict=False`` on that field alone (its items
stay strict). The annotated types are the bounds several sections share.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import ConfigDict, Field

__all__ = ["MAX_SIDE", "STRICT", "Seed", "SomePath"]

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
MAX_SIDE = 16384  # pixels: an image's side or a view's size beyond this is a typo (1e9), not a request

Seed = Annotated[int, Field(ge=0, lt=2**63)]  # what torch and numpy generators take
SomePath = Annotated[str, Field(min_length=1, pattern=r"\S")]  # "" would name the recipe's own folder
