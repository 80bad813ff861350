"""Recipes: the YAML schema, loading, and validation whose errors name the file, the field and what was expected.

A recipe has ``name``, ``source`` (the seed inputs), ``runtime``, ``output`` and ``stages`` (a mapping from
stage name to that stage's settings; stages run in the registry's pipeline order). Each section is a pydantic
model whose fields carry their help text; ``syngen validate`` checks a recipe without running anything.
"""

from __future__ import annotations

import difflib
import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator
from pydantic_core import ErrorDetails

from syngen.assets import bundled_dirs
from syngen.errors import PreflightError, RecipeError, excerpt
from syngen.settings import STRICT, CpuThreads, SomePath
from syngen.stages import STAGES, stage_class
from syngen.stages.base import Context, ModelStageConfig, StageConfig
from syngen.stages.ground import GroundConfig, makes_masks

__all__ = ["Recipe", "RecipeError", "RecipeLoader", "RecipeModel", "load_recipe", "read_yaml", "reference_markdown"]

MAX_BYTES = 1 << 20  # a recipe file's size: PyYAML is pure Python, a megabyte takes it seconds
MAX_ALIASES = 100  # YAML aliases (*name) a recipe may use
MAX_NODES = 20_000  # YAML values a recipe may expand to, aliases expanded: an alias bomb stops here
MAX_DEPTH = 64  # mappings and lists nested in each other: PyYAML composes them recursively
MAX_NUMBER = 100  # characters of a number: Python refuses to convert integers of over 4,300 digits


class RecipeLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses duplicate keys; more than :data:`MAX_ALIASES` aliases or :data:`MAX_NODES`
    values once aliases are expanded (a 300-byte alias bomb expands to billions); values nested more than
    :data:`MAX_DEPTH` deep (they would exhaust Python's stack); numbers longer than :data:`MAX_NUMBER` characters;
    and scalars Python cannot make (``2024-13-45``, a lone surrogate). Each refusal is a YAMLError with its line."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node:
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"values nested more than {MAX_DEPTH} deep", self.peek_event().start_mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if isinstance(node, yaml.ScalarNode) and node.tag.endswith((":int", ":float")) and len(node.value) > MAX_NUMBER:
            raise yaml.constructor.ConstructorError(
                None, None, f"a number of {len(node.value)} characters (at most {MAX_NUMBER})", node.start_mark
            )
        try:
            value = super().construct_object(node, deep=deep)
            if isinstance(value, str) and not value.isascii():
                value.encode("utf-8")  # a lone surrogate ("\\udc80") cannot be written to a file or a card
            return value
        except (ValueError, OverflowError) as err:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"cannot read {excerpt(node.value)} as {node.tag.rsplit(':', 1)[-1]}: {err}",
                node.start_mark,
            ) from None

    def compose_document(self) -> yaml.Node:
        node = super().compose_document()
        aliases, total = _expanded_size(node, {})
        if aliases > MAX_ALIASES or total > MAX_NODES:
            raise yaml.YAMLError(
                f"the document uses {aliases} aliases and expands to {total} values; a recipe may use at most "
                f"{MAX_ALIASES} aliases and {MAX_NODES} values"
            )
        return node

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, (str, int, float, bool)) or key is None:
                if key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"duplicate key {key!r} (first on line {seen[key] + 1})", key_node.start_mark
                    )
                seen[key] = key_node.start_mark.line
        return super().construct_mapping(node, deep=deep)


def _expanded_size(node: yaml.Node, memo: dict[int, tuple[int, int]]) -> tuple[int, int]:
    """(aliases, values) of ``node`` with every alias expanded; a shared node is counted at each use."""
    if id(node) in memo:
        aliases, total = memo[id(node)]
        return aliases + 1, total
    aliases, total = 0, 1
    if isinstance(node, yaml.MappingNode):
        children = [child for pair in node.value for child in pair]
    elif isinstance(node, yaml.SequenceNode):
        children = node.value
    else:
        children = []
    memo[id(node)] = (0, 1)  # a recursive alias counts once
    for child in children:
        child_aliases, child_total = _expanded_size(child, memo)
        aliases, total = aliases + child_aliases, total + child_total
    memo[id(node)] = (aliases, total)
    return aliases, total


def read_yaml(path: Path) -> tuple[str, Any]:
    """The text and the YAML document at ``path``, read with :class:`RecipeLoader`; :class:`RecipeError` when it
    is larger than :data:`MAX_BYTES`, not UTF-8 or not valid YAML (naming the line, with a hint for a tab)."""
    try:
        with path.open("rb") as file:
            data = file.read(MAX_BYTES + 1)
        if len(data) > MAX_BYTES:
            raise RecipeError(f"{path}: over {MAX_BYTES} bytes; a recipe is a short settings file")
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecipeError(f"{path}: not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})") from None
    except OSError as err:
        raise RecipeError(f"{path}: cannot read the recipe: {err.strerror or err}") from None
    stream = io.StringIO(text)
    stream.name = str(path)  # YAML's messages name the file (else "<file>")
    try:
        return text, yaml.load(stream, Loader=RecipeLoader)  # noqa: S506 (a SafeLoader subclass)
    except yaml.YAMLError as err:
        raise RecipeError(f"{path}: not valid YAML: {_yaml_problem(err, text)}") from None


def _yaml_problem(err: yaml.YAMLError, text: str) -> str:
    """A YAML error on one line: the problem, where it is, and for a line holding a tab, what to do."""
    message = " ".join(line.strip() for line in str(err).splitlines())
    mark = getattr(err, "problem_mark", None)
    if mark is not None and "\t" in (text.splitlines()[mark.line : mark.line + 1] or [""])[0]:
        message += (
            f". Line {mark.line + 1} holds a tab: YAML indents with spaces only, so replace the tab with spaces "
            "(an editor's 'convert indentation to spaces' does it)"
        )
    return message


class RuntimeConfig(BaseModel):
    """Where and how the models run."""

    model_config = STRICT

    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: cuda when available, else cpu.")
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="Model dtype; auto: float16 on cuda, float32 on cpu."
    )
    wave_size: int = Field(64, ge=1, description="Samples per wave: every stage runs over a wave before the next.")
    memory_budget: float | None = Field(
        None,
        ge=0,
        description="GiB the loaded models may take together; models stay loaded across waves while they fit, the "
        "least recently used is freed when the next does not. none: the device's memory (GPU memory on cuda, RAM "
        "on cpu); 0: one model at a time.",
    )
    overlap: Literal["auto", "on", "off"] = Field(
        "auto",
        description="Run the model-free stages before the first model stage (the source: reading and checking "
        "images) one wave ahead, and those after the last (views) one wave behind, in worker threads beside the "
        "model stages. auto: on with a GPU (its CPU cores are otherwise idle), off on cpu (the models use every "
        "core there). Results are the same either way.",
    )
    cpu_threads: CpuThreads = Field(
        "auto",
        description="CPU threads the run keeps busy, torch's and syngen's own together. auto: the process's CPU "
        "share (its affinity, capped by a cgroup CPU quota as in containers and Slurm jobs). Results differ only "
        "in the last digits of floats, which depend on torch's thread count (as on another machine).",
    )


class OutputConfig(BaseModel):
    """Where results go."""

    model_config = STRICT

    dir: SomePath | None = Field(None, description="Output folder; default outputs/<name>. `--out` overrides it.")
    license: str = Field("other", description="License written into the dataset card (e.g. cc-by-4.0).")
    pretty_name: str | None = Field(None, description="Human-readable dataset name for the card.")
    push_to_hub: str | None = Field(None, description="Hub repo id (org/name) to push to after a successful export.")
    private: bool = Field(False, description="Create the Hub repo as private.")
    embed_images: bool = Field(
        False,
        description="Store a copy of the image in every preference pair (self-contained rows, a much larger "
        "dataset); by default pairs refer to their grounding row by image_id (syngen.data.load_preference joins).",
    )
    revision: str | None = Field(None, description="Hub branch to push to (created when missing).")

    @field_validator("push_to_hub")
    @classmethod
    def _hub_id(cls, value: str | None) -> str | None:
        """A repo id the Hub takes, checked here rather than when the push fails after the whole run."""
        from syngen.refs import HUB_ID_RULE, is_hub_id

        if value is not None and not is_hub_id(value):
            raise ValueError(f"expected {HUB_ID_RULE}")
        return value


class RecipeModel(BaseModel):
    """The top level of a recipe file."""

    model_config = STRICT

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$", max_length=255, description="Run name; names the output folder."
    )
    description: str = Field("", description="Free text, copied into the dataset card.")
    source: dict[str, Any] = Field(description="Seed inputs (see the source stage's settings).")
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig, description="Device, dtype, wave size, seed.")
    output: OutputConfig = Field(default_factory=OutputConfig, description="Output folder, card and Hub settings.")
    stages: dict[str, dict[str, Any] | None] = Field(
        default_factory=dict, description="Stage name -> settings; present stages run, in pipeline order."
    )


@dataclass
class Recipe:
    """A validated recipe: the top level, each stage's config (source first, pipeline order), and its text."""

    path: Path
    text: str
    top: RecipeModel
    stages: dict[str, StageConfig] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.top.name

    def context(self) -> Context:
        """The runtime context stages see (device and dtype resolved; torch is imported only for device auto)."""
        rt = self.top.runtime
        device = rt.device
        if device == "auto":
            import torch

            device = "cuda" if torch.cuda.is_available() else "cpu"
        dtype = ("float16" if device == "cuda" else "float32") if rt.dtype == "auto" else rt.dtype
        return Context(recipe_dir=self.path.parent.resolve(), device=device, dtype=dtype)

    def out_dir(self, override: Path | None = None) -> Path:
        return override or Path(self.top.output.dir or Path("outputs") / self.top.name)


def load_recipe(path: str | Path) -> Recipe:
    """Read and validate a recipe file; raises :class:`RecipeError` on the first problem found."""
    path = Path(path)
    if not path.is_file():
        raise RecipeError(f"{path}: no such recipe file")
    text, data = read_yaml(path)
    if not isinstance(data, dict):
        raise RecipeError(f"{path}: expected a mapping of recipe fields at the top level, got {type(data).__name__}")
    _check_keys(path, data, RecipeModel, "")
    top = _validate(path, RecipeModel, data, "")
    for name in top.stages:
        if name not in STAGES or name == "source":
            known = [s for s in STAGES if s != "source"]
            raise RecipeError(
                f"{path}: stages.{_key(name)}: unknown stage{_did_you_mean(name, known)}; expected one of "
                f"{', '.join(known)}"
            )
    raw = {"source": top.source} | {name: top.stages[name] or {} for name in STAGES if name in top.stages}
    configs: dict[str, StageConfig] = {}
    for name, values in raw.items():
        where = "source" if name == "source" else f"stages.{name}"
        cls = stage_class(name).Config
        _check_keys(path, values, cls, where + ".")
        configs[name] = _validate(path, cls, values, where + ".")
    recipe = Recipe(path=path, text=text, top=top, stages=configs)
    _fill_shared_models(recipe)
    _check_models(recipe)
    _check_masks_made_once(recipe)
    _check_files(recipe)
    _check_columns(recipe)
    _check_stages_build(recipe)
    return recipe


def _validate(path: Path, model: type[BaseModel], data: Any, prefix: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as err:
        first = err.errors()[0]
        loc = prefix + ".".join(str(p) for p in first["loc"])
        raise RecipeError(f"{path}: {loc.rstrip('.') or '(top level)'}: {_explain(first)}") from None


def _explain(error: ErrorDetails) -> str:
    """A pydantic error as a recipe's author reads it: what was expected, and an excerpt of what was given."""
    got, kind = error.get("input"), error["type"]
    if isinstance(got, bool) and kind in ("int_type", "float_type"):
        return f"expected a number, got the boolean {str(got).lower()}"
    expected = "expected true or false" if kind == "bool_type" else error["msg"].removeprefix("Value error, ")
    return expected if isinstance(got, dict) else f"{expected} (got {excerpt(got)})"


def _check_keys(path: Path, data: Any, model: type[BaseModel], prefix: str) -> None:
    """Unknown keys, recursively through nested models, with a did-you-mean suggestion."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        if key not in fields:
            hint, expected = _did_you_mean(str(key), list(fields)), ", ".join(fields)
            raise RecipeError(f"{path}: {prefix}{_key(key)}: unknown field{hint}; expected one of {expected}")
        annotation = fields[key].annotation
        for candidate in getattr(annotation, "__args__", ()) + (annotation,):
            if isinstance(candidate, type) and issubclass(candidate, BaseModel):
                _check_keys(path, value, candidate, f"{prefix}{key}.")


def _key(key: object) -> str:
    """A key as a message names it: as written when short, else an excerpt."""
    return str(key) if len(str(key)) <= 60 else excerpt(key)


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _fill_shared_models(recipe: Recipe) -> None:
    """The negatives stage reuses the segment stage's model (and its cached image embeddings) unless told otherwise:
    the same checkpoint, loaded the same way (dtype, compile), so the runner hands it the same loaded model."""
    negatives = recipe.stages.get("negatives")
    if isinstance(negatives, ModelStageConfig) and negatives.model is None:
        segment = recipe.stages.get("segment")
        ground = recipe.stages.get("ground")
        if segment is None and isinstance(ground, GroundConfig) and makes_masks(ground):
            segment = ground  # SAM 3: its interactive head segments the prompts, on the ground stage's embeddings
        if not isinstance(segment, ModelStageConfig):
            raise RecipeError(
                f"{recipe.path}: stages.negatives.model: expected a segmenter model (or a segment stage to share)"
            )
        negatives.model = segment.model
        if "dtype" not in negatives.model_fields_set and "compile" not in negatives.model_fields_set:
            negatives.dtype, negatives.compile = segment.dtype, segment.compile


def _check_models(recipe: Recipe) -> None:
    """Every stage's model names a known backend (tiny twins: a known twin) of the role its stage runs, and every
    model setting (``model``, synthesize's ``vae``) is a tiny twin, a Hub id or an existing path."""
    from syngen.models import BACKENDS
    from syngen.models.loading import backend_for
    from syngen.refs import TINY_PREFIX, is_hub_id

    ctx = Context(recipe_dir=recipe.path.parent.resolve())
    for name, config in recipe.stages.items():
        for key, ref in config.model_refs().items():
            where = f"{recipe.path}: stages.{name}.{key}"
            if key == "model":
                cls = stage_class(name)
                try:
                    backend = backend_for(ref, cls.default_backend)
                except PreflightError as err:
                    raise RecipeError(f"{where}: {err}") from None
                role = BACKENDS[backend].role
                if not BACKENDS[backend].serves(cls.role):
                    fitting = [b for b, spec in BACKENDS.items() if spec.role == cls.role]
                    raise RecipeError(
                        f"{where}: {excerpt(ref.id)} runs on backend {backend!r}, a {role}; the {name} stage needs a "
                        f"{cls.role} (backends: {', '.join(fitting)})"
                    )
            if not (ref.id.startswith(TINY_PREFIX) or ctx.resolve_path(ref.id).exists() or is_hub_id(ref.id)):
                raise RecipeError(f"{where}: {excerpt(ref.id)} is neither a Hub id (org/name) nor an existing path")


def _check_masks_made_once(recipe: Recipe) -> None:
    """A ground stage whose model makes masks (SAM 3) leaves no work to a segment stage, which would replace them."""
    ground = recipe.stages.get("ground")
    if "segment" in recipe.stages and isinstance(ground, GroundConfig) and makes_masks(ground):
        raise RecipeError(
            f"{recipe.path}: stages.segment: the ground stage's model ({ground.model.id}) already gives each region "
            "its mask; remove the segment stage (the negatives stage then uses that model's interactive head)"
        )


def _check_files(recipe: Recipe) -> None:
    """Fields named ``path`` or ``prompt`` must name existing files or folders."""
    ctx = Context(recipe_dir=recipe.path.parent.resolve())
    for name, config in recipe.stages.items():
        for key in ("path", "prompt"):
            value = getattr(config, key, None)
            if isinstance(value, str) and not ctx.resolve_path(value).exists():
                where = "source" if name == "source" else f"stages.{name}"
                raise RecipeError(
                    f"{recipe.path}: {where}.{key}: expected an existing file or folder, but {excerpt(value)} was "
                    f"found neither beside the recipe ({ctx.recipe_dir}), nor in the current folder, nor among the "
                    f"files bundled with syngen ({' or '.join(map(str, bundled_dirs()))})"
                )


def _check_stages_build(recipe: Recipe) -> None:
    """Every stage can be set up from its settings (e.g. its prompt file has the placeholders it needs)."""
    ctx = Context(recipe_dir=recipe.path.parent.resolve())
    for name, config in recipe.stages.items():
        try:
            stage_class(name)(config, ctx)
        except (ValueError, OSError) as err:
            where = "source" if name == "source" else f"stages.{name}"
            raise RecipeError(f"{recipe.path}: {where}: {err}") from None


def _check_columns(recipe: Recipe) -> None:
    """Every stage's needed columns come from the source or an earlier stage."""
    have: set[str] = set()
    for name, config in recipe.stages.items():
        cls = stage_class(name)
        missing = [c for c in cls.needs if c not in have]
        if missing:
            where = "source.kind" if name == "source" else f"stages.{name}"
            raise RecipeError(
                f"{recipe.path}: {where}: the {name} stage needs {', '.join(missing)}, which neither the source nor "
                f"an earlier stage provides; add the stage that makes it (e.g. caption before phrases)"
            )
        have |= set(cls.provides(config))


def reference_markdown() -> str:
    """Markdown tables of the runtime, output, source and every stage's settings (field, default, help), as in
    docs/recipes.md."""
    sections: list[tuple[str, type[BaseModel]]] = [("`runtime`", RuntimeConfig), ("`output`", OutputConfig)]
    sections += [("`source`" if n == "source" else f"`stages.{n}`", stage_class(n).Config) for n in STAGES]
    parts = []
    for title, cls in sections:
        lines = [f"{title}:", "", "| field | default | meaning |", "| --- | --- | --- |"]
        for field_name, info in cls.model_fields.items():
            default = info.get_default(call_default_factory=True) if not info.is_required() else "required"
            if isinstance(default, BaseModel):
                default = getattr(default, "id", default)
            shown = "required" if default == "required" else "none" if default is None else f"`{default}`"
            shown = '`""`' if default == "" else shown
            lines.append(f"| `{field_name}` | {shown} | {info.description or ''} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)
