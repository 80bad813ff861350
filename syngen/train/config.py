"""Training options: one dataclass per objective, fields with help text and TRL's names, YAML files plus overrides.

Every objective's config subclasses :class:`TrainConfig` and adds its own fields; each field carries
``metadata={"help": ...}`` and is checked in ``__post_init__`` (a bad value raises :class:`ConfigError` naming
the field). Field names are TRL's / transformers' ``TrainingArguments`` names where they have one.
:func:`load_config` merges, in order: the dataclass defaults, ``--config train.yaml`` (or an earlier run's
``training_config.json``), then the options given on the command line. syngen's earlier names (``lr``, ``out``,
``--resume``...) still load from each of them, with a one-line deprecation warning naming the new one
(:func:`translate`); an unknown name gets a "did you mean". :func:`options_table` renders the fields as
docs/training.md's tables.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib.util
import logging
import math
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import yaml

from syngen.errors import ConfigError
from syngen.refs import HUB_ID_RULE, is_hub_id

C = TypeVar("C", bound="TrainConfig")
log = logging.getLogger(__name__)

SCHEDULERS = ("constant", "linear", "cosine")
REPORT_TO = ("tensorboard", "none")
# syngen's names before TRL's (old -> new) that every objective shares; the objectives add their own
RENAMED = {
    "data": "dataset_name",
    "out": "output_dir",
    "split": "dataset_train_split",
    "epochs": "num_train_epochs",
    "batch_size": "per_device_train_batch_size",
    "grad_accum": "gradient_accumulation_steps",
    "lr": "learning_rate",
    "scheduler": "lr_scheduler_type",
    "log_steps": "logging_steps",
    "cpu": "use_cpu",
    "private": "hub_private_repo",
    "resume": "resume_from_checkpoint",
    "mixed_precision": "bf16",  # and fp16: see translate()
}


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
    """What every objective shares: data, output, optimisation, precision, checkpoints, logging, evaluation, Hub.

    Field names are TRL's (``TrainingArguments``); :attr:`renamed` maps syngen's earlier names to them.
    """

    renamed: ClassVar[dict[str, str]] = RENAMED

    dataset_name: str = field(
        default="",
        metadata={"help": "Dataset: a syngen output folder, its dataset/ folder, or a Hub dataset id."},
    )
    output_dir: str = field(
        default="", metadata={"help": "Output folder for checkpoints, metrics.jsonl, curves.png and the model."}
    )
    dataset_train_split: str = field(default="train", metadata={"help": "Dataset split to train on."})
    dataset_test_split: str | None = field(
        default=None, metadata={"help": "Dataset split to evaluate on during training (see eval_steps)."}
    )
    eval_fraction: float = field(
        default=0.0,
        metadata={
            "help": "Without dataset_test_split: share of the training images held out for evaluation (a split "
            "seeded by `seed`); 0 = no evaluation."
        },
    )
    max_steps: int = field(
        default=-1, metadata={"help": "Optimizer steps to run; -1 = as many as num_train_epochs passes take."}
    )
    num_train_epochs: float = field(
        default=1.0, metadata={"help": "Passes over the data (ignored when max_steps is set)."}
    )
    per_device_train_batch_size: int = field(default=4, metadata={"help": "Samples per device per micro-batch."})
    per_device_eval_batch_size: int = field(default=8, metadata={"help": "Samples per forward pass in evaluation."})
    gradient_accumulation_steps: int = field(
        default=1, metadata={"help": "Micro-batches whose gradients are summed into one optimizer step."}
    )
    learning_rate: float = field(default=1e-4, metadata={"help": "Peak learning rate (AdamW)."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    warmup_steps: int = field(default=0, metadata={"help": "Linear warm-up steps."})
    lr_scheduler_type: str = field(
        default="constant", metadata={"help": f"Learning-rate schedule after warm-up: {', '.join(SCHEDULERS)}."}
    )
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping norm; 0 = no clipping."})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 mixed precision."})
    fp16: bool = field(default=False, metadata={"help": "float16 mixed precision (needs a GPU)."})
    seed: int = field(default=0, metadata={"help": "Random seed (data order, initialisation, eval_fraction split)."})
    use_cpu: bool = field(default=False, metadata={"help": "Train on CPU even when a GPU is there."})
    cpu_threads: int | None = field(
        default=None,
        metadata={
            "help": "CPU threads torch keeps busy in each process; default: the process's CPU share (its affinity, "
            "capped by a cgroup CPU quota as in containers and Slurm jobs) divided among the processes "
            "`accelerate launch` starts on this machine, less one for the process's other threads."
        },
    )
    save_steps: int = field(
        default=500, metadata={"help": "Save a checkpoint every N optimizer steps; 0 = only at the end."}
    )
    save_total_limit: int = field(default=2, metadata={"help": "Keep at most N intermediate checkpoints; 0 = all."})
    logging_steps: int = field(default=10, metadata={"help": "Log metrics every N optimizer steps."})
    eval_steps: int | None = field(
        default=None,
        metadata={
            "help": "Evaluate on the eval split every N optimizer steps, and at the end; default: logging_steps."
        },
    )
    report_to: str | None = field(
        default=None,
        metadata={
            "help": f"Where metrics go besides metrics.jsonl: {', '.join(REPORT_TO)}; default: tensorboard when it "
            "is installed (the [tensorboard] extra), else none."
        },
    )
    resume_from_checkpoint: str | None = field(
        default=None,
        metadata={"help": "A checkpoint folder to continue from, or `true` for the latest one in output_dir."},
    )
    push_to_hub: bool = field(
        default=False, metadata={"help": "Upload the final model to the Hub (token from HF_TOKEN)."}
    )
    hub_model_id: str | None = field(
        default=None, metadata={"help": "Hub model repo for push_to_hub; default: output_dir's folder name."}
    )
    hub_private_repo: bool = field(default=False, metadata={"help": "Create the Hub repo as private."})

    def __post_init__(self) -> None:
        check_finite(self)
        check_positive(self, "per_device_train_batch_size", "per_device_eval_batch_size", "num_train_epochs")
        check_positive(self, "gradient_accumulation_steps", "eval_steps", "cpu_threads")
        check_positive(self, "learning_rate", "weight_decay", "warmup_steps", "max_grad_norm", allow_zero=True)
        check_positive(self, "save_steps", "save_total_limit", "logging_steps", allow_zero=True)
        check_choice("lr_scheduler_type", self.lr_scheduler_type, SCHEDULERS)
        if self.max_steps == 0 or self.max_steps < -1:
            raise ConfigError(
                f"max_steps: expected a number of optimizer steps > 0, or -1 to run num_train_epochs passes over "
                f"the data; got {self.max_steps}"
            )
        if not 0 <= self.eval_fraction < 1:
            raise ConfigError(f"eval_fraction: expected a share in [0, 1); got {self.eval_fraction!r}")
        if self.bf16 and self.fp16:
            raise ConfigError("bf16, fp16: choose one mixed precision, not both")
        if not self.dataset_name:
            raise ConfigError("dataset_name: a dataset is needed (--dataset-name)")
        if not self.output_dir:
            raise ConfigError("output_dir: an output folder is needed (--output-dir)")
        if self.eval_steps is not None and not self.has_eval_split:
            raise ConfigError(
                "eval_steps: there is nothing to evaluate on; give dataset_test_split, or eval_fraction > 0 to hold "
                "out part of the training data"
            )
        self.report_to = check_report_to(self.report_to)
        if self.push_to_hub and not is_hub_id(self.hub_repo):
            # checked now, not when the push fails after the whole run
            named = "hub_model_id" if self.hub_model_id else "hub_model_id (default: output_dir's folder name)"
            raise ConfigError(f"{named}: expected {HUB_ID_RULE}; got {self.hub_repo!r}")
        if self.logging_steps == 0:
            self.logging_steps = 1

    @property
    def hub_repo(self) -> str:
        """The Hub model repo ``push_to_hub`` uploads to: ``hub_model_id``, or ``output_dir``'s folder name."""
        return self.hub_model_id or Path(self.output_dir).resolve().name

    @property
    def has_eval_split(self) -> bool:
        """True when the run evaluates: a test split is named or part of the data is held out."""
        return bool(self.dataset_test_split) or self.eval_fraction > 0

    @property
    def mixed_precision(self) -> str:
        """accelerate's spelling of bf16 / fp16: ``"bf16"``, ``"fp16"`` or ``"no"``."""
        return "bf16" if self.bf16 else "fp16" if self.fp16 else "no"


def check_finite(config: Any) -> None:
    """Raises :class:`ConfigError` for the first float field of ``config`` that is NaN or infinite."""
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{f.name}: expected a finite number; got {value}")


def check_report_to(value: str | None) -> str:
    """``value`` checked, or the default: ``tensorboard`` when it is installed, else ``none``."""
    installed = importlib.util.find_spec("tensorboard") is not None
    if value is None:
        return "tensorboard" if installed else "none"
    check_choice("report_to", value, REPORT_TO)
    if value == "tensorboard" and not installed:
        raise ConfigError(
            "report_to: tensorboard is not installed; install it with `pip install 'syngen[tensorboard]'`, or "
            "set report_to none"
        )
    return value


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
    """``cls`` from its defaults, then the YAML (or JSON) file ``path`` (if any), then ``overrides``.

    ``overrides`` are the command line's options by field name (None values skipped); earlier names in either
    are translated with a deprecation warning. Raises :class:`ConfigError` for an unknown key (with the closest
    known one) or a value of the wrong type, naming the file and the key.
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
        loaded = {str(key).replace("-", "_"): value for key, value in loaded.items()}
        for key in loaded:
            if key not in known and key not in cls.renamed:
                raise ConfigError(f"{path}: unknown option {key!r}{did_you_mean(key, cls)}")
        for key, value in translate(cls, loaded, f"{path}: ").items():
            if key == "resume_from_checkpoint" and isinstance(value, bool):  # YAML `true`
                value = "true" if value else None
            values[key] = _coerce(f"{path}: {key}", value, known[key])
    given = {key: value for key, value in (overrides or {}).items() if value is not None}
    values.update(translate(cls, given, flags=True))
    try:
        return cls(**values)
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}" if path else str(err)) from None


def translate(cls: type[TrainConfig], values: dict[str, Any], where: str = "", flags: bool = False) -> dict[str, Any]:
    """``values`` with syngen's earlier option names (``cls.renamed``) turned into TRL's, each with a one-line
    deprecation warning (prefixed with ``where``, e.g. the file; ``flags`` shows names as ``--options``).

    Besides plain renames: ``mixed_precision: bf16|fp16`` becomes ``bf16``/``fp16: true``, ``resume: true``
    becomes ``resume_from_checkpoint: true``, ``push_to_hub: ORG/NAME`` becomes ``push_to_hub: true`` +
    ``hub_model_id``, and ``max_steps: 0`` (the old "use epochs") becomes -1 when the values use old names.
    Where both names are given, the new one wins.
    """

    def show(key: str) -> str:
        return "--" + key.replace("_", "-") if flags else key

    def deprecated(old: str, new: str) -> None:
        log.warning(f"{where}{old} is deprecated: use {new}")

    out = {key: value for key, value in values.items() if key not in cls.renamed}
    old = [key for key in values if key in cls.renamed]
    if "push_to_hub" in values and values["push_to_hub"] is None:  # an old training_config.json: no push
        del out["push_to_hub"]
    if isinstance(values.get("push_to_hub"), str):
        deprecated(f"{show('push_to_hub')} ORG/NAME", f"{show('push_to_hub')} with {show('hub_model_id')}")
        out["push_to_hub"], out["hub_model_id"] = True, out.get("hub_model_id") or values["push_to_hub"]
    for key in old:
        new, value = cls.renamed[key], values[key]
        if key == "mixed_precision":
            check_choice(where + show(key).lstrip("-"), value, ("no", "fp16", "bf16"))
            deprecated(show(key), f"{show('bf16')} or {show('fp16')}")
            new = value if value != "no" else "bf16"
            value = value != "no"
        elif key == "resume":
            deprecated(show(key), f"{show(new)} true (or a checkpoint folder)")
            value = "true" if value else None
        else:
            deprecated(show(key), show(new))
        if new not in values and value is not None:
            out.setdefault(new, value)
    if old and out.get("max_steps") == 0:
        out["max_steps"] = -1
    return out


def did_you_mean(key: str, cls: type[TrainConfig], flags: bool = False) -> str:
    """``"; did you mean 'x'?"`` for the field of ``cls`` closest to ``key`` (an earlier name counts as its new
    one), else ``""``; with ``flags``, names are shown as ``--options``."""
    names = [f.name for f in dataclasses.fields(cls)]
    candidates = {**{n: n for n in names}, **cls.renamed}
    close = difflib.get_close_matches(key.replace("-", "_"), list(candidates), n=1, cutoff=0.6)
    if not close:
        return f"; known: {', '.join(names)}" if not flags else ""
    best = candidates[close[0]]
    return f"; did you mean --{best.replace('_', '-')}?" if flags else f"; did you mean {best!r}?"


def _coerce(name: str, value: Any, annotation: Any) -> Any:
    kind = base_type(annotation)
    if value is None:
        if kind is annotation:  # not optional
            raise ConfigError(f"{name}: expected {kind.__name__}; got null")
        return None
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if kind is float and isinstance(value, str):  # YAML 1.1 reads 1e-5 (no dot) as a string
        try:
            return float(value)
        except ValueError:
            pass
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{name}: expected {kind.__name__}; got {value!r}")
    return value


def options_table(cls: type) -> str:
    """The fields of ``cls`` as a Markdown table (option, type, default, help), as docs/training.md shows them."""
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
    """What training the text-promptable SAM policy shares (sft and dpo): the policy to start from, the
    image-embedding cache."""

    model_name_or_path: str = field(
        default="",
        metadata={"help": "Policy checkpoint to start from (a `syngen train` output folder or Hub id)."},
    )
    policy: str = field(
        default="text-promptable-sam",
        metadata={
            "help": "Policy to train when model_name_or_path is not a saved policy: text-promptable-sam (a prompter "
            "on SAM's mask decoder), sam3 (SAM 3 itself, from the SAM 3 checkpoint model_name_or_path). A saved "
            "policy is loaded as what it is."
        },
    )
    freeze_image_encoder: bool = field(
        default=True,
        metadata={"help": "Keep SAM's image encoder frozen (its embeddings are then computed once and cached)."},
    )
    embedding_cache: int = field(
        default=256,
        metadata={"help": "Image embeddings kept in memory (least recently used dropped); 0 = recompute each step."},
    )
    disk_cache: bool = field(
        default=False, metadata={"help": "Also keep image embeddings on disk under <output_dir>/embeddings/."}
    )

    def __post_init__(self) -> None:
        from syngen.train.policies import POLICIES  # the models' modules, only when a config is made

        super().__post_init__()
        check_positive(self, "embedding_cache", allow_zero=True)
        check_choice("policy", self.policy, tuple(POLICIES))


@dataclass
class SftConfig(SamTrainConfig):
    """``syngen train sft``: SAM's focal + Dice on the ``grounding`` masks, from SAM and CLIP checkpoints."""

    renamed: ClassVar[dict[str, str]] = {
        **RENAMED,
        "sam": "sam_model_name_or_path",
        "text_encoder": "text_encoder_name_or_path",
    }

    model_name_or_path: str = field(
        default="",
        metadata={
            "help": "Policy checkpoint to continue from (a `syngen train` output folder or Hub id), or with policy "
            "sam3 the SAM 3 checkpoint to start from (facebook/sam3, a local folder, tiny:sam3); default: a new "
            "text-promptable-sam policy from sam_model_name_or_path and text_encoder_name_or_path."
        },
    )
    sam_model_name_or_path: str = field(
        default="facebook/sam-vit-base", metadata={"help": "SAM checkpoint (Hub id, local folder, or tiny:segmenter)."}
    )
    text_encoder_name_or_path: str = field(
        default="openai/clip-vit-base-patch32",
        metadata={"help": "CLIP text encoder checkpoint (Hub id, local folder, or tiny:text-encoder)."},
    )
    prompter_layers: int = field(default=2, metadata={"help": "Attention layers of the text-to-prompt module."})
    prompter_heads: int = field(default=8, metadata={"help": "Attention heads of the text-to-prompt module."})
    sparse_queries: int = field(default=4, metadata={"help": "Learnable sparse prompt queries."})
    train_text_encoder: bool = field(default=False, metadata={"help": "Fine-tune the text encoder too."})
    coarse_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of focal + Dice on the prompter's coarse mask (as in ReferSAM; text-promptable-sam only)."
        },
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.policy == "sam3" and not self.model_name_or_path:
            raise ConfigError("model_name_or_path: policy sam3 starts from a SAM 3 checkpoint (e.g. facebook/sam3)")
        check_positive(self, "prompter_layers", "prompter_heads", "sparse_queries")
        check_positive(self, "coarse_weight", allow_zero=True)


@dataclass
class DpoConfig(SamTrainConfig):
    """``syngen train dpo``: mask DPO on the ``preference`` pairs, from an ``sft`` checkpoint."""

    renamed: ClassVar[dict[str, str]] = {
        **RENAMED,
        "init": "model_name_or_path",
        "precompute_ref_logps": "precompute_ref_log_probs",
    }

    model_name_or_path: str = field(
        default="",
        metadata={
            "help": "Policy checkpoint to start from (an sft output folder or Hub id), or with policy sam3 a SAM 3 "
            "checkpoint."
        },
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (AdamW)."})
    beta: float = field(default=0.1, metadata={"help": "DPO temperature β."})
    loss_type: str = field(default="sigmoid", metadata={"help": f"DPO loss: {', '.join(LOSS_TYPES)}."})
    label_smoothing: float = field(
        default=0.0,
        metadata={
            "help": "cDPO: the assumed share of pairs whose labels are flipped, in [0, 0.5) (sigmoid loss only)."
        },
    )
    sft_weight: float = field(
        default=1.0,
        metadata={
            "help": "Weight of the supervised term (SAM's focal + Dice, as sft) on the chosen mask, as RPO adds; 0 = "
            "pure DPO, which pushes whole masks down (held-out mIoU 0 in benchmarks/learn.py)."
        },
    )
    precompute_ref_log_probs: bool = field(
        default=False,
        metadata={"help": "Compute the reference log-probabilities once before training and drop the reference model."},
    )

    def __post_init__(self) -> None:
        super().__post_init__()
        if not self.model_name_or_path:
            raise ConfigError("model_name_or_path: a policy checkpoint to start from is needed (--model-name-or-path)")
        check_choice("loss_type", self.loss_type, LOSS_TYPES)
        check_positive(self, "beta")
        check_positive(self, "sft_weight", allow_zero=True)
        if not 0 <= self.label_smoothing < 0.5:
            raise ConfigError(f"label_smoothing: expected a share in [0, 0.5); got {self.label_smoothing!r}")
        if self.label_smoothing and self.loss_type != "sigmoid":
            raise ConfigError(f"label_smoothing: applies to the sigmoid loss only; loss_type is {self.loss_type!r}")


@dataclass
class AmcConfig(TrainConfig):
    """``syngen train amc``: attention mask consistency on BLIP image-text matching, from the ``grounding`` boxes."""

    renamed: ClassVar[dict[str, str]] = {**RENAMED, "model": "model_name_or_path"}

    model_name_or_path: str = field(
        default="Salesforce/blip-itm-base-coco",
        metadata={"help": "BlipForImageTextRetrieval checkpoint (Hub id, local folder, or tiny:itm-blip)."},
    )
    learning_rate: float = field(default=1e-5, metadata={"help": "Peak learning rate (AdamW)."})
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
