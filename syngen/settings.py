"""What every recipe section's pydantic model shares (a leaf module: it imports nothing of syngen).

:data:`STRICT` is their ``model_config``: no unknown keys; strict types, so a string is never a flag
(``trust_remote_code: "yes"`` is refused, not taken as true), a boolean never a number (``memory_budget: true``)
and a string never a number (``steps: "30"``); finite floats only (no ``.inf`` or ``.nan``). A field whose value
YAML can only give as a list but the model keeps as a tuple sets ``strict=False`` on that field alone (its items
stay strict). The annotated types are the bounds several sections share.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, PlainValidator
from pydantic_core import PydanticCustomError

__all__ = ["MAX_SIDE", "STRICT", "CpuThreads", "Seed", "SomePath"]

STRICT = ConfigDict(extra="forbid", strict=True, allow_inf_nan=False)
MAX_SIDE = 16384  # pixels: an image's side or a view's size beyond this is a typo (1e9), not a request

Seed = Annotated[int, Field(ge=0, lt=2**63)]  # what torch and numpy generators take
SomePath = Annotated[str, Field(min_length=1, pattern=r"\S")]  # "" would name the recipe's own folder


def _cpu_threads(value: object) -> int | str:
    """``value`` when it is ``auto`` or a whole number >= 1 (one message for both, not one per union member)."""
    if value == "auto" or (type(value) is int and value >= 1):
        return value
    if isinstance(value, bool):  # worded as for every other number (recipe._explain)
        raise PydanticCustomError("int_type", "Input should be a valid integer")
    raise ValueError("expected auto or a whole number of threads >= 1")


CpuThreads = Annotated[
    Literal["auto"] | int, PlainValidator(_cpu_threads, json_schema_input_type=Literal["auto"] | int)
]  # syngen.cpus.plan's setting
