"""What names a model in a recipe: :class:`ModelRef` (a leaf module: it imports only :mod:`syngen.settings`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field, field_validator, model_validator

from syngen.settings import STRICT

TINY_PREFIX = "tiny:"


def looks_local(spec: str) -> bool:
    """True when ``spec`` (a dataset or model) can only be a local path: not a Hub repo id (:func:`is_hub_id`),
    or ``./``, ``../`` or ``~`` first, or a data or weights file's suffix. ``org/name`` reads both ways."""
    suffixes = (".parquet", ".arrow", ".json", ".jsonl", ".csv", ".pt", ".pth", ".safetensors", ".ckpt")
    return not is_hub_id(spec) or spec.startswith((".", "~")) or Path(spec).suffix in suffixes


class ModelRef(BaseModel):
    """A model: a Hub id, a local path, or ``tiny:<name>`` for a tiny twin."""

    model_config = STRICT

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


HUB_ID_RULE = (
    "a Hub repo id, name or namespace/name: letters, digits, '-', '_' and '.', neither starting nor ending with '-' "
    "or '.', no '--' or '..', at most 96 characters"
)


def is_hub_id(value: str) -> bool:
    """Whether the Hub takes ``value`` as a repo id (``name`` or ``namespace/name``)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True
