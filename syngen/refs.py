"""What names a model in a recipe: :class:`ModelRef` (a leaf module: it imports nothing of syngen)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

TINY_PREFIX = "tiny:"
# a Hub repo id: "name" or "namespace/name" (letters, digits, "-", "_", ".")
_HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")


def looks_local(spec: str) -> bool:
    """True when ``spec`` (a dataset or model) can only be a local path: absolute, ``./``, ``../`` or ``~``
    first, more than one ``/``, a backslash, or a data or weights file's suffix. ``org/name`` reads both ways."""
    return (
        spec.startswith(("/", ".", "~"))
        or "\\" in spec
        or not _HUB_ID.fullmatch(spec)
        or Path(spec).suffix
        in (".parquet", ".arrow", ".json", ".jsonl", ".csv", ".pt", ".pth", ".safetensors", ".ckpt")
    )


class ModelRef(BaseModel):
    """A model: a Hub id, a local path, or ``tiny:<name>`` for a tiny twin."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(description="Hub id (org/name), local path, or tiny:<name> for a randomly initialised twin.")
    revision: str | None = Field(None, description="Hub revision (branch, tag or commit) to pin.")
    backend: str | None = Field(None, description="Backend adapter; defaults to the stage's (see `syngen models`).")
    trust_remote_code: bool = Field(False, description="Allow the checkpoint's own Python code. Off unless needed.")

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, value: Any) -> Any:
        return {"id": value} if isinstance(value, str) else value

    @field_validator("id")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a model id, local path or tiny:<name>")
        return value

    @property
    def tiny(self) -> str | None:
        """The twin's name for ``tiny:<name>``, else None."""
        return self.id[len(TINY_PREFIX) :] if self.id.startswith(TINY_PREFIX) else None
