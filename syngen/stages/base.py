"""The stage contract: what a stage needs, what it adds, its config, the model role it runs, one batch call.

A stage subclass sets ``name``, ``needs`` (columns it reads), ``adds`` (columns it writes), ``Config`` (a
:class:`StageConfig` subclass whose fields carry their help text; :class:`ModelStageConfig` for stages with a
model) and ``role`` (the model role it runs, None for none), and implements :meth:`Stage.process` (the batch's
model calls, given the loaded model by the engine) and, for CPU work on their output, :meth:`Stage.finish`.
The first stage is a :class:`SourceStage`: it also enumerates the seed items.
It declares what it publishes in the exported dataset in ``publishes`` (column -> datasets feature type and
the card's line about it; see :mod:`syngen.columns`). A stage only computes: it never decides where data
is stored nor where its work runs (the engine runs ``finish`` on the calling thread beside a CPU model and in the
run's pool beside a GPU, while the next batch's model calls run); the engine never knows what it computes.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, TypeVar

from pydantic import BaseModel, Field
from pydantic.json_schema import JsonDict

from syngen.assets import bundled_dirs
from syngen.errors import PreflightError
from syngen.models.roles import Role
from syngen.refs import ModelRef
from syngen.sample import Failure, Sample
from syngen.settings import STRICT

if TYPE_CHECKING:
    from syngen.columns import Column

__all__ = [
    "ADDED_LATER",
    "Context",
    "ModelRef",
    "ModelStageConfig",
    "Outcome",
    "SourceStage",
    "Stage",
    "StageConfig",
    "Update",
]


# ``json_schema_extra`` of a setting added after results were stored: left at its default it stays out of the
# stage's fingerprint, so an upgrade keeps those results (the default keeps the earlier behaviour).
ADDED_LATER: JsonDict = {"added_later": True}
# ``json_schema_extra`` of a setting that changes how a stage runs but not what it makes (memory savers such as
# CPU offload or VAE slicing): never part of the fingerprint, like ``batch_size``.
RUNTIME_ONLY: JsonDict = {"runtime_only": True}


class StageConfig(BaseModel):
    """Settings every stage has."""

    model_config = STRICT

    batch_size: int = Field(8, ge=1, description="Samples per model call; halved and retried on CUDA out-of-memory.")

    def model_refs(self) -> dict[str, ModelRef]:
        """Every model these settings name, by setting: ``model`` and any other (e.g. synthesize's ``vae``)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        return {name: value for name, value in values.items() if isinstance(value, ModelRef)}


class ModelStageConfig(StageConfig):
    """Settings of a stage that runs a model: ``model`` (subclasses set its default and help with
    :func:`model_field`)."""

    model: ModelRef | None = Field(None, description="The model this stage runs.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] | None = Field(
        None,
        description="This stage's model dtype; auto: bfloat16 on GPUs that support it, float16 on older GPUs, "
        "float32 on CPU; none: runtime.dtype.",
        json_schema_extra=ADDED_LATER,
    )
    compile: bool = Field(
        False,
        description="torch.compile the model (faster calls on a GPU after a slow first one; results may differ in "
        "the last bits).",
        json_schema_extra=ADDED_LATER,
    )


def model_field(default: str, description: str) -> Any:
    """A ``model`` field defaulting to ``default`` (a Hub id, path or tiny twin), with its help text."""
    return Field(default_factory=lambda: ModelRef(id=default), description=description)


@dataclass
class Context:
    """What a stage may know about the run: the recipe's folder (to resolve relative paths) and the runtime."""

    recipe_dir: Path
    device: str = "cpu"
    dtype: str = "float32"

    def resolve_path(self, value: str | Path) -> Path:
        """A recipe path: absolute, else relative to the recipe's folder, the current folder, or the files bundled
        with syngen (where ``prompts/`` and the bundled recipes' ``seeds/`` live), the first that exists."""
        path = Path(value).expanduser()
        if path.is_absolute():
            return path
        for base in (self.recipe_dir, Path.cwd(), *bundled_dirs()):
            if (base / path).exists():
                return base / path
        return self.recipe_dir / path


# an output sample's fields (its "image": the encoded bytes)
Update = dict[str, Any]
Outcome = Update | list[Update] | Failure  # a sample's result


M = TypeVar("M")  # the model a stage runs: a role Protocol of syngen.models.roles, or None
C = TypeVar("C", bound=StageConfig)


class Stage(Generic[C, M]):
    """Base class. Subclasses set the class attributes and implement :meth:`process`, and :meth:`finish` for CPU
    work on the model's output.

    ``process`` takes a batch of samples and the loaded model (None for a stage with no ``role``) and makes the
    batch's model calls; it returns one entry per sample, in order, which ``finish(sample, entry)`` turns into the
    sample's outcome: a dict of the columns added (same id), a list of such dicts each with its own ``id``
    (fan-out, e.g. several images per caption) or a :class:`Failure` (an entry that is a Failure is one already).
    ``finish`` is pure CPU work (mask checks, RLEs, PNG encoding): it touches no model and nothing shared, as it
    may run in another thread while the next batch's ``process`` does; an error in it fails that sample alone.
    :meth:`outcomes` runs both here, as a caller outside the engine does.
    """

    name: ClassVar[str]
    needs: ClassVar[tuple[str, ...]] = ()
    adds: ClassVar[tuple[str, ...]] = ()
    publishes: ClassVar[dict[str, Column]] = {}  # columns of the exported `grounding` config: name -> type and doc
    Config: ClassVar[type[StageConfig]] = StageConfig
    role: ClassVar[Role | None] = None
    default_backend: ClassVar[str | None] = None

    def __init__(self, config: C, ctx: Context):
        self.config = config
        self.ctx = ctx

    @classmethod
    def provides(cls, config: Any) -> tuple[str, ...]:
        """The columns this stage adds under ``config`` (the source's depend on its kind)."""
        return cls.adds

    @classmethod
    def published(cls, config: StageConfig) -> dict[str, Column]:
        """The columns this stage publishes under ``config``: those of ``publishes`` it provides."""
        provided = cls.provides(config)
        return {name: column for name, column in cls.publishes.items() if name in provided}

    def model_ref(self) -> ModelRef | None:
        """The model this stage runs, or None for stages without one."""
        return self.config.model if isinstance(self.config, ModelStageConfig) else None

    def preflight(self) -> None:
        """Resolves every model this stage names (tiny twins are built here), before any compute; one that cannot
        be resolved raises :class:`PreflightError` naming the stage and the setting."""
        from syngen.models.loading import resolve

        for name, ref in self.config.model_refs().items():
            try:
                resolve(ref)
            except PreflightError as err:
                raise PreflightError(f"stages.{self.name}.{name}: {err}") from None

    def model_dtype(self) -> str:
        """The dtype this stage's model runs in: the stage's ``dtype`` setting when it has one (``auto``: bfloat16
        on GPUs that support it, float16 on older ones, float32 on CPU), else the runtime's."""
        from syngen.models.base import resolve_dtype

        dtype = getattr(self.config, "dtype", None)
        return self.ctx.dtype if dtype is None else resolve_dtype(dtype, self.ctx.device)

    def model_options(self) -> dict[str, Any]:
        """Keyword arguments for the model adapter at load (e.g. diffusers options); none by default."""
        return {}

    def fingerprint(self) -> dict[str, Any]:
        """What decides this stage's output: its config (model id and revision included; a tiny twin's version),
        less batch sizes, the settings marked :data:`RUNTIME_ONLY` and those marked :data:`ADDED_LATER` that are at
        their defaults. Pin ``revision`` to make a Hub checkpoint part of it for good."""
        from syngen.models.twins import TINY_VERSION

        ref = self.model_ref()
        tiny = {"tiny_version": TINY_VERSION} if ref is not None and ref.tiny is not None else {}
        at_default = {
            name
            for name, info in type(self.config).model_fields.items()
            if info.json_schema_extra == ADDED_LATER
            and getattr(self.config, name) == info.get_default(call_default_factory=True)
        }
        runtime_only = {n for n, i in type(self.config).model_fields.items() if i.json_schema_extra == RUNTIME_ONLY}
        config = self.config.model_dump(mode="json", exclude={"batch_size"} | at_default | runtime_only)
        return {"stage": self.name, "config": config} | tiny

    def shrink(self) -> bool:
        """Halve the size of this stage's model calls after a CUDA out-of-memory error; False when they cannot
        shrink further. By default a model call is the runner's batch, which the runner halves itself: a stage
        whose calls hold more than its batch (e.g. several images per caption) overrides this."""
        return False

    def process(self, samples: list[Sample], model: M) -> list[Any]:
        raise NotImplementedError

    def finish(self, sample: Sample, raw: Any) -> Outcome:
        """``sample``'s outcome from its entry of :meth:`process`; by default the entry is the outcome."""
        return raw

    def outcomes(self, samples: list[Sample], model: M) -> list[Outcome]:
        """:meth:`process` then :meth:`finish` for each sample, on this thread."""
        raws = self.process(samples, model)
        return [raw if isinstance(raw, Failure) else self.finish(s, raw) for s, raw in zip(samples, raws, strict=True)]


class SourceStage(Stage[C, None]):
    """The first stage: enumerates the seed items, then ``process`` loads them (no model)."""

    def items(self, limit: int | None = None) -> Iterator[Sample]:
        """Seed items ``{"id", "source"}`` in a stable order, at most ``limit``."""
        raise NotImplementedError
