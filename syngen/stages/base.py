"""The stage contract: what a stage needs, what it adds, its config, and one batch call.

A stage subclass sets ``name``, ``needs`` (columns it reads), ``adds`` (columns it writes) and ``Config``
(a :class:`StageConfig` subclass whose fields carry their help text), and implements :meth:`Stage.process`.
It declares what it publishes in the exported dataset in ``publishes`` (column -> datasets feature type and
the card's line about it; see :mod:`syngen.export.schema`). It never decides where data is stored; the runner
never knows what it computes.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from syngen.assets import assets_dir
from syngen.sample import Failure, Sample

if TYPE_CHECKING:
    from syngen.export.schema import Column


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


class StageConfig(BaseModel):
    """Settings every stage has."""

    model_config = ConfigDict(extra="forbid")

    batch_size: int = Field(8, ge=1, description="Samples per model call; halved and retried on CUDA out-of-memory.")


@dataclass
class Context:
    """What a stage may know about the run: the recipe's folder (to resolve relative paths) and the runtime."""

    recipe_dir: Path
    device: str = "cpu"
    dtype: str = "float32"

    def resolve_path(self, value: str | Path) -> Path:
        """A recipe path: absolute, else relative to the recipe's folder, the current folder, or the files bundled
        with syngen (where ``prompts/`` live), the first that exists."""
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        for base in (self.recipe_dir, Path.cwd(), assets_dir()):
            if (base / path).exists():
                return base / path
        return self.recipe_dir / path


Update = dict[str, Any]
Result = Update | list[Update] | Failure


class Stage:
    """Base class. Subclasses set the class attributes and implement :meth:`process`.

    ``process`` takes a batch of samples and returns one result per sample, in order:
    a dict of the columns added (same id), a list of such dicts each with its own ``id`` (fan-out,
    e.g. several images per caption), or a :class:`Failure`.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    adds: ClassVar[tuple[str, ...]] = ()
    publishes: ClassVar[dict[str, Column]] = {}  # columns of the exported `grounding` config: name -> type and doc
    Config: ClassVar[type[StageConfig]] = StageConfig
    default_backend: ClassVar[str | None] = None

    def __init__(self, config: StageConfig, ctx: Context):
        self.config = config
        self.ctx = ctx
        self.model: Any = None

    @classmethod
    def provides(cls, config: StageConfig) -> tuple[str, ...]:
        """The columns this stage adds under ``config`` (the source's depend on its kind)."""
        return cls.adds

    @classmethod
    def published(cls, config: StageConfig) -> dict[str, Column]:
        """The columns this stage publishes under ``config``: those of ``publishes`` it provides."""
        provided = cls.provides(config)
        return {name: column for name, column in cls.publishes.items() if name in provided}

    def model_ref(self) -> ModelRef | None:
        """The model this stage runs, or None for stages without one."""
        return getattr(self.config, "model", None)

    def fingerprint(self) -> dict[str, Any]:
        """What decides this stage's output: its config (model id and revision included; a tiny twin's version),
        less batch sizes. Pin ``revision`` to make a Hub checkpoint part of it for good."""
        from syngen.models.loading import TINY_PREFIX, TINY_VERSION

        ref = self.model_ref()
        tiny = {"tiny_version": TINY_VERSION} if ref is not None and ref.id.startswith(TINY_PREFIX) else {}
        return {"stage": self.name, "config": self.config.model_dump(mode="json", exclude={"batch_size"})} | tiny

    def process(self, samples: list[Sample]) -> list[Result]:
        raise NotImplementedError
