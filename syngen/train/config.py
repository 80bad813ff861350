"""Training options: one dataclass per objective, fields with help text (TRL style), YAML files plus overrides.

Every objective's config subclasses :class:`TrainConfig` and adds its own fields; each field carries
``metadata={"help": ...}`` and is checked in ``__post_init__`` (a bad value raises :class:`ConfigError` naming
the field). :func:`load_config` merges, in order: the dataclass defaults, ``--config train.yaml``, then the
options given on the command line. :func:`options_table` renders the fields as the README's tables.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

from syngen.errors import ConfigError

C = TypeVar("C", bound="TrainConfig")

MIXED_PRECISION = ("no", "fp16", "bf16")
SCHEDULERS = ("constant", "linear", "cosine")


def check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """Raises :class:`ConfigError` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ConfigError(f"{name}: expected one of {', '.join(choices)}; got {value!r}")


def check_positive(config: Any, *names: str, allow_zero: bool = False) -> None:
    """Raises :class:`ConfigError` for the first of ``names`` whose value is not > 0 (or >= 0)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and (value < 0 or (value == 0 and not allow_zero)):
            raise ConfigError(f"{name}: expected a number {'>=' if allow_zero else '>'} 0; got {value!r}")


@dataclass
class TrainConfig:
    """What every objective shares: data, output, optimisation, precision, checkpoints, logging, Hub."""

    data: str = field(
        default="",
        metadata={"help": "Dataset: a syngen output folder, its dataset/ folder, or a Hub dataset id."},
    )
    out: str = field(default="", metadata={"help": "Output folder for checkpoints, metrics.jsonl and the model."})
    split: str = field(default="train", metadata={"help": "Dataset split to train on."})
    max_steps: int = field(
        default=0, metadata={"help": "Optimizer steps to run; 0 = as many as `epochs` passes over the data take."}
    )
    epochs: int = field(default=1, metadata={"help": "Passes over the data (ignored when max_steps > 0)."})
    batch_size: int = field(default=4, metadata={"help": "Samples per device per step."})
    grad_accum: int = field(default=1, metadata={"help": "Gradient accumulation steps per optimizer step."})
    lr: float = field(default=1e-4, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    scheduler: str = field(
        default="constant", metadata={"help": f"Learning-rate schedule after warm-up: {', '.join(SCHEDULERS)}."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm; 0 = no clipping."})
    mixed_precision: str = field(
        default="no", metadata={"help": f"Mixed precision: {', '.join(MIXED_PRECISION)} (fp16 needs a GPU)."}
    )
    seed: int = field(default=0, metadata={"help": "Random seed (data order, initialisation)."})
    cpu: bool = field(default=False, metadata={"help": "Train on CPU even when a GPU is there."})
    save_steps: int = field(
        default=500, metadata={"help": "Save a checkpoint every N optimizer steps; 0 = only at the end."}
    )
    save_total_limit: int = field(default=2, metadata={"help": "Keep at most N intermediate checkpoints; 0 = all."})
    log_steps: int = field(default=10, metadata={"help": "Log metrics every N optimizer steps."})
    resume: bool = field(default=False, metadata={"help": "Continue from the last checkpoint in the output folder."})
    push_to_hub: str | None = field(
        default=None, metadata={"help": "Hub model repo to upload the final model to (token from HF_TOKEN)."}
    )
    private: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})

    def __post_init__(self) -> None:
        check_positive(self, "batch_size", "grad_accum", "epochs")
        check_positive(self, "lr", "weight_decay", "warmup_steps", "max_grad_norm", allow_zero=True)
        check_positive(self, "max_steps", "save_steps", "save_total_limit", "log_steps", allow_zero=True)
        check_choice("mixed_precision", self.mixed_precision, MIXED_PRECISION)
        check_choice("scheduler", self.scheduler, SCHEDULERS)
        if not self.data:
            raise ConfigError("data: a dataset is needed (--data)")
        if not self.out:
            raise ConfigError("out: an output folder is needed (--out)")
        if self.log_steps == 0:
            self.log_steps = 1


def fields_of(cls: type) -> list[tuple[dataclasses.Field, type]]:
    """The dataclass fields of ``cls`` with their resolved types."""
    hints = typing.get_type_hints(cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(cls)]


def base_type(annotation: Any) -> type:
    """``int`` for ``int | None`` and so on."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args[0]
    return annotation


def default_of(f: dataclasses.Field) -> Any:
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return f.default


def load_config(cls: type[C], path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> C:
    """``cls`` from its defaults, then the YAML file ``path`` (if any), then ``overrides`` (None values skipped).

    Raises :class:`ConfigError` for an unknown key or a value of the wrong type, naming the file and the key.
    """
    values: dict[str, Any] = {}
    known = {f.name: t for f, t in fields_of(cls)}
    if path is not None:
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"{path}: cannot read the training config: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: expected a mapping of option: value")
        for key, value in loaded.items():
            key = str(key).replace("-", "_")
            if key not in known:
                raise ConfigError(f"{path}: unknown option {key!r}; known: {', '.join(known)}")
            values[key] = _coerce(f"{path}: {key}", value, known[key])
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = value
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    kind = base_type(annotation)
    if value is None:
        if kind is annotation:  # not optional
            raise ConfigError(f"{name}: expected {kind.__name__}; got null")
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{name}: expected {kind.__name__}; got {value!r}")
    return value


def options_table(cls: type) -> str:
    """The fields of ``cls`` as a Markdown table (option, type, default, help), as the README shows them."""
    lines = ["| option | type | default | help |", "|---|---|---|---|"]
    for f, annotation in fields_of(cls):
        kind = base_type(annotation).__name__
        default = default_of(f)
        shown = "" if default in ("", None) else f"`{default}`"
        option = "--" + f.name.replace("_", "-")
        lines.append(f"| `{option}` | {kind} | {shown} | {f.metadata.get('help', '')} |")
    return "\n".join(lines)


LOSS_TYPES = ("sigmoid", "ipo", "hinge")


@dataclass
class SamTrainConfig(TrainConfig):
    """What training the text-promptable SAM policy shares (sft and dpo): the image-embedding cache."""

    freeze_image_encoder: bool = field(
        default=True,
        metadata={"help": "Keep SAM's image encoder frozen (its embeddings are then computed once and cached)."},
    )
    embedding_cache: int = field(
        default=256,
        metadata={"help": "Image embeddings kept in memory (least recently used dropped); 0 = recompute each step."},
    )
    disk_cache: bool = field(
        default=False, metadata={"help": "Also keep image embeddings on disk under <out>/embeddings/."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "embedding_cache", allow_zero=True)


@dataclass
class SftConfig(SamTrainConfig):
    """``syngen train sft``: SAM's focal + Dice on the ``grounding`` masks, from SAM and CLIP checkpoints."""

    sam: str = field(
        default="facebook/sam-vit-base", metadata={"help": "SAM checkpoint (Hub id, local folder, or tiny:segmenter)."}
    )
    text_encoder: str = field(
        default="openai/clip-vit-base-patch32",
        metadata={"help": "CLIP text encoder checkpoint (Hub id, local folder, or tiny:text-encoder)."},
    )
    prompter_layers: int = field(default=2, metadata={"help": "Attention layers of the text-to-prompt module."})
    prompter_heads: int = field(default=8, metadata={"help": "Attention heads of the text-to-prompt module."})
    sparse_queries: int = field(default=4, metadata={"help": "Learnable sparse prompt queries."})
    train_text_encoder: bool = field(default=False, metadata={"help": "Fine-tune the text encoder too."})
    coarse_weight: float = field(
        default=1.0, metadata={"help": "Weight of focal + Dice on the prompter's coarse mask (as in ReferSAM)."}
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "prompter_layers", "prompter_heads", "sparse_queries")
        check_positive(self, "coarse_weight", allow_zero=True)


@dataclass
class DpoConfig(SamTrainConfig):
    """``syngen train dpo``: mask DPO on the ``preference`` pairs, from an ``sft`` checkpoint."""

    init: str = field(default="", metadata={"help": "Policy checkpoint to start from (an sft output folder)."})
    lr: float = field(default=1e-5, metadata={"help": "Peak learning rate (AdamW)."})
    beta: float = field(default=0.1, metadata={"help": "DPO temperature β."})
    loss_type: str = field(default="sigmoid", metadata={"help": f"DPO loss: {', '.join(LOSS_TYPES)}."})
    sft_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the supervised term (SAM's focal + Dice, as sft) on the chosen mask, as RPO adds; 0 = "
            "pure DPO, which pushes whole masks down (held-out mIoU 0 in benchmarks/learn.py)."
        },
    )
    precompute_ref_logps: bool = field(
        default=False,
        metadata={"help": "Compute the reference log-probabilities once before training and drop the reference model."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.init:
            raise ConfigError("init: a policy checkpoint to start from is needed (--init)")
        check_choice("loss_type", self.loss_type, LOSS_TYPES)
        check_positive(self, "beta")
        check_positive(self, "sft_weight", allow_zero=True)


@dataclass
class AmcConfig(TrainConfig):
    """``syngen train amc``: attention mask consistency on BLIP image-text matching, from the ``grounding`` boxes."""

    model: str = field(
        default="Salesforce/blip-itm-base-coco",
        metadata={"help": "BlipForImageTextRetrieval checkpoint (Hub id, local folder, or tiny:itm-blip)."},
    )
    lr: float = field(default=1e-5, metadata={"help": "Peak learning rate (AdamW)."})
    gradcam_layer: int = field(
        default=-4,
        metadata={
            "help": "Text-encoder layer whose cross-attention gives Grad-CAM; negative counts from the end (-4 = "
            "layer 8 of BLIP's 12, as AMC uses on ALBEF). Not the last layer: its per-token maps are zero."
        },
    )
    max_length: int = field(default=35, metadata={"help": "Phrase tokens kept (longer phrases are truncated)."})
    amc_weight: float = field(default=1.0, metadata={"help": "Weight of the AMC loss."})
    itm_weight: float = field(default=1.0, metadata={"help": "Weight of the ITM loss (in-batch hard negatives)."})
    mean_margin: float = field(default=0.1, metadata={"help": "Margin of the AMC mean term (in-box vs out-of-box)."})
    max_margin: float = field(default=0.5, metadata={"help": "Margin of the AMC max term (in-box vs out-of-box)."})
    mean_weight: float = field(default=0.2, metadata={"help": "Weight of the AMC mean term inside the AMC loss."})
    max_weight: float = field(default=0.8, metadata={"help": "Weight of the AMC max term inside the AMC loss."})
    min_heat: float = field(
        default=1e-10,
        metadata={
            "help": "Samples whose raw Grad-CAM peak is below this are left out of the AMC loss (a random model's "
            "maps are ~1e-13; normalising them explodes the gradients)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        check_positive(self, "max_length")
        check_positive(self, "amc_weight", "itm_weight", "mean_margin", "max_margin", allow_zero=True)
        check_positive(self, "mean_weight", "max_weight", "min_heat", allow_zero=True)
