"""Recipe validation: every bad recipe fails at once, naming the file, the field and what was expected."""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from syngen.recipe import RecipeError, load_recipe, read_yaml

REPO = Path(__file__).resolve().parent.parent


def write(tmp_path: Path, recipe: dict) -> Path:
    (tmp_path / "seeds").mkdir(exist_ok=True)
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


def base() -> dict:
    return {
        "name": "t",
        "source": {"kind": "images", "path": "seeds"},
        "stages": {"caption": {"model": "tiny:captioner-blip"}},
    }


@pytest.mark.parametrize("name", ["quickstart.yaml", "synground.yaml", "open.yaml"])
def test_bundled_recipes_validate(tmp_path: Path, name: str) -> None:
    data = yaml.safe_load((REPO / "recipes" / name).read_text())
    data["source"]["path"] = str(REPO / "recipes" / "seeds" / "quickstart")  # synground's is the user's folder
    recipe = load_recipe(write(tmp_path, data))
    assert list(recipe.stages) == [
        "source",
        "caption",
        "synthesize",
        "phrases",
        "ground",
        "segment",
        "negatives",
        "views",
    ]


@pytest.mark.parametrize(
    "change, field, expected",
    [
        (lambda r: r.update(nmae="x"), "nmae", "did you mean 'name'"),
        (lambda r: r["stages"]["caption"].update(batch_sz=2), "stages.caption.batch_sz", "did you mean 'batch_size'"),
        (lambda r: r["stages"].update(captoin={}), "stages.captoin", "did you mean 'caption'"),
        (
            lambda r: r["stages"]["caption"].update(batch_size=0),
            "stages.caption.batch_size",
            "greater than or equal to 1",
        ),
        (lambda r: r["stages"]["caption"].update(batch_size="many"), "stages.caption.batch_size", "valid integer"),
        (lambda r: r["source"].update(kind="videos"), "source.kind", "'images', 'dataset' or 'captions'"),
        (lambda r: r["source"].update(path="nowhere"), "source.path", "expected an existing file or folder"),
        (lambda r: r["stages"]["caption"].update(prompt="missing.txt"), "stages.caption.prompt", "existing file"),
        (
            lambda r: r["stages"].update(ground={"box_threshold": 1.5}),
            "stages.ground.box_threshold",
            "less than or equal to 1",
        ),
        (
            lambda r: r["stages"]["caption"].update(model={"id": "x/y", "backend": "nope"}),
            "stages.caption.model",
            "unknown backend",
        ),
        (lambda r: r["stages"]["caption"].update(model="tiny:nothing"), "stages.caption.model", "unknown tiny twin"),
        (
            lambda r: r["stages"]["caption"].update(model="tiny:segmenter"),
            "stages.caption.model",
            "backend 'sam', a segmenter; the caption stage needs a captioner (backends: blip, llava, qwen2.5-vl)",
        ),
        (
            lambda r: r["stages"]["caption"].update(model={"id": "org/some-llm", "backend": "causal-lm"}),
            "stages.caption.model",
            "backend 'causal-lm', a llm; the caption stage needs a captioner",
        ),
        (lambda r: r["runtime"].update(wave_size=0), "runtime.wave_size", "greater than or equal to 1"),
        (lambda r: r.pop("name"), "name", "Field required"),
        (lambda r: r["stages"].update(phrases={}) or r["stages"].pop("caption"), "stages.phrases", "needs caption"),
    ],
    ids=[
        "unknown-top-key",
        "unknown-stage-key",
        "unknown-stage",
        "batch-size-zero",
        "wrong-type",
        "bad-source-kind",
        "missing-source-folder",
        "missing-prompt-file",
        "threshold-above-one",
        "unknown-backend",
        "unknown-tiny-twin",
        "twin-of-another-role",
        "backend-of-another-role",
        "wave-size-zero",
        "missing-name",
        "stage-input-missing",
    ],
)
def test_bad_recipe_names_file_field_and_expectation(tmp_path: Path, change, field: str, expected: str) -> None:
    recipe = base() | {"runtime": {}}
    change(recipe)
    path = write(tmp_path, recipe)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    message = str(err.value)
    assert message.startswith(f"{path}: {field}"), message
    assert expected in message, message


def test_prompt_without_placeholder(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("List the phrases.")
    recipe = base()
    recipe["stages"]["phrases"] = {"prompt": "p.txt"}
    with pytest.raises(RecipeError, match=r"stages\.phrases: .*p\.txt has no \{caption\} placeholder"):
        load_recipe(write(tmp_path, recipe))


def test_not_yaml_mapping(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("- just\n- a list\n")
    with pytest.raises(RecipeError, match="expected a mapping"):
        load_recipe(path)


def test_negatives_share_the_segment_model(tmp_path: Path) -> None:
    recipe = base()
    recipe["stages"] |= {"phrases": {}, "ground": {}, "segment": {"model": "tiny:segmenter"}, "negatives": {}}
    loaded = load_recipe(write(tmp_path, recipe))
    assert loaded.stages["negatives"].model == loaded.stages["segment"].model


def test_cli_validate_exits_nonzero_without_traceback(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from syngen.cli import app

    recipe = base()
    recipe["stages"]["caption"]["batch_size"] = 0
    result = CliRunner().invoke(app, ["validate", str(write(tmp_path, recipe))])
    assert result.exit_code == 2
    assert "stages.caption.batch_size" in result.output
    assert "Traceback" not in result.output


def quickstart_data() -> dict:
    data = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())
    data["source"]["path"] = str(REPO / "recipes" / "seeds" / "quickstart")
    data["stages"]["negatives"] = {"model": "tiny:segmenter"}
    return data


def _sections() -> list[tuple[str, type[BaseModel]]]:
    from syngen.recipe import OutputConfig, RecipeModel, RuntimeConfig
    from syngen.stages import STAGES, stage_class

    named = [("", RecipeModel), ("runtime", RuntimeConfig), ("output", OutputConfig)]
    return named + [("source" if n == "source" else f"stages.{n}", stage_class(n).Config) for n in STAGES]


def _set(data: dict, where: str, key: str, value: Any) -> None:
    section = data
    for part in [p for p in where.split(".") if p]:
        section = section.setdefault(part, {}) or {}
    section[key] = value


WRONG_TYPES = [{"a": {"b": 1}}, ["a", "list"], "not-a-number", 2.5, True]


def _schema_cases() -> list:
    cases = []
    for where, model in _sections():
        for key, info in model.model_fields.items():
            field = f"{where}.{key}".lstrip(".")
            cases.append(pytest.param(where, key, "type", None, id=f"{field}-wrong-type"))
            for bound in info.metadata:
                for attr, step in (("ge", -1), ("gt", 0), ("le", 1), ("lt", 0)):
                    if getattr(bound, attr, None) is not None:
                        value = getattr(bound, attr) + (step if isinstance(getattr(bound, attr), int) else step * 0.5)
                        value = value if step else getattr(bound, attr)
                        cases.append(pytest.param(where, key, "range", value, id=f"{field}-{attr}-out-of-range"))
            if key in ("path", "prompt"):
                cases.append(pytest.param(where, key, "missing", "no/such/file.txt", id=f"{field}-missing-file"))
    return cases


@pytest.mark.parametrize("where, key, case, value", _schema_cases())
def test_every_field_refuses_bad_values_naming_the_field(
    tmp_path: Path, where: str, key: str, case: str, value: Any
) -> None:
    """Each field given a wrong type (the first of WRONG_TYPES it refuses), an out-of-range value or a missing
    file fails validation with a message naming the field; a field that takes every wrong type fails the test."""
    field = f"{where}.{key}".lstrip(".")
    for candidate in WRONG_TYPES if case == "type" else [value]:
        data = quickstart_data()
        _set(data, where, key, candidate)
        path = write(tmp_path, data)
        try:
            load_recipe(path)
        except RecipeError as err:
            assert str(err).startswith(f"{path}: {field}"), str(err)
            assert "Traceback" not in str(err) and len(str(err)) < 600
            return
    pytest.fail(f"{field} accepted {case} values {WRONG_TYPES if case == 'type' else value!r}")


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param("name: a\nname: b\n", "duplicate key 'name' (first on line 1)", id="duplicate-top-key"),
        pytest.param(
            "name: a\nstages:\n  caption: {batch_size: 1, batch_size: 2}\n", "duplicate key 'batch_size'", id="nested"
        ),
        pytest.param(
            "a: &a [x, x, x, x, x, x, x, x, x]\n"
            + "".join(f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)),
            "expands to",
            id="alias-bomb",
        ),
        pytest.param("a: &a x\nb: [" + ", ".join(["*a"] * 101) + "]\n", "101 aliases", id="too-many-aliases"),
        pytest.param("name: t\n\xff\xfe: x\n", "not UTF-8 text (byte 0xff at offset 8)", id="not-utf-8"),
    ],
)
def test_yaml_reader_refuses_abuse(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "r.yaml"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


def test_a_few_aliases_and_merge_keys_still_work(tmp_path: Path) -> None:
    (tmp_path / "seeds").mkdir()
    path = tmp_path / "r.yaml"
    path.write_text(
        "name: t\nsource: {kind: images, path: seeds}\nruntime: {wave_size: &n 2}\n"
        "stages:\n  caption: {model: 'tiny:captioner-blip', batch_size: *n}\n"
    )
    assert load_recipe(path).stages["caption"].batch_size == 2
    path.write_text("base: &b {kind: images, path: x}\nsource:\n  <<: *b\n  path: seeds\n")
    assert read_yaml(path)[1]["source"] == {"kind": "images", "path": "seeds"}


@pytest.mark.parametrize(
    "change, field, expected",
    [
        pytest.param(lambda r: r["runtime"].update(wave_size=True), "runtime.wave_size", "boolean", id="bool-wave"),
        pytest.param(
            lambda r: r["stages"]["caption"].update(batch_size=False), "stages.caption.batch_size", "boolean", id="bool"
        ),
        pytest.param(
            lambda r: r.update(name="no spaces " * 500), "name", "... (5002 characters)", id="long-value-excerpt"
        ),
        pytest.param(
            lambda r: r["stages"]["caption"].update(model="./no/such/model"),
            "stages.caption.model",
            "neither a Hub id",
            id="model-not-hub-id-nor-path",
        ),
        pytest.param(
            lambda r: r["stages"]["caption"].update(model="org/name/extra"),
            "stages.caption.model",
            "neither a Hub id",
            id="model-three-parts",
        ),
    ],
)
def test_values_that_are_not_what_they_seem(tmp_path: Path, change, field: str, expected: str) -> None:
    recipe = base() | {"runtime": {}}
    change(recipe)
    path = write(tmp_path, recipe)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"{path}: {field}") and expected in str(err.value), str(err.value)
    assert len(str(err.value)) < 400


@pytest.mark.parametrize("model", ["tiny:captioner-blip", "Salesforce/blip-image-captioning-base", "gpt2", "local"])
def test_model_ids_that_are_hub_ids_tiny_twins_or_paths_validate(tmp_path: Path, model: str) -> None:
    (tmp_path / "local").mkdir()
    recipe = base()
    recipe["stages"]["caption"]["model"] = model
    assert load_recipe(write(tmp_path, recipe)).stages["caption"].model.id == model


@pytest.mark.parametrize(
    ("name", "chain"),
    [
        ("quickstart", "c6e7cf933aeff56555403e05f0213db96266549a"),
        ("synground", "16e2f97d9cf5a415fc00b9dc9a7623e2fc678085"),
    ],
    ids=["quickstart", "synground"],
)
def test_schema_changes_leave_the_stored_fingerprints_alone(tmp_path: Path, name: str, chain: str) -> None:
    """The fingerprint chain of the bundled recipes (stages mostly at their defaults), as the runner computes it,
    is the one recorded on f1b374f: a stricter schema must not make stored runs recompute."""
    import hashlib

    from syngen.stages import stage_class
    from syngen.store import to_json

    data = yaml.safe_load((REPO / "recipes" / f"{name}.yaml").read_text())
    data["source"]["path"] = "seeds/quickstart"  # synground's is the user's folder
    recipe = load_recipe(write(tmp_path, data))
    fingerprints = [stage_class(n)(c, recipe.context()).fingerprint() for n, c in recipe.stages.items()]
    seeds = REPO / "syngen" / "assets" / "recipes" / "seeds" / "quickstart"
    assert fingerprints[0]["config"]["path"] == str(seeds.resolve())  # the source's: where the seeds are
    fingerprints[0]["config"]["path"] = "seeds/quickstart"  # as recorded, wherever the checkout is
    digest = ""
    for fingerprint in fingerprints:
        if "tiny_version" in fingerprint:  # twins' runs recompute when the twins change (TINY_VERSION 2 then)
            fingerprint["tiny_version"] = "2"
        digest = hashlib.sha1((digest + to_json(fingerprint)).encode()).hexdigest()
    assert digest == chain, fingerprints


def _kinds(annotation: Any) -> set[Any]:
    """Every type inside ``annotation`` (its union members, container items)."""
    args = typing.get_args(annotation)
    return {annotation}.union(*(_kinds(a) for a in args)) if args else {annotation}


def _typed_fields(*wanted: type) -> list:
    """(where, key, container) of every recipe field holding one of ``wanted`` (directly, optional, or as the items
    of a list or tuple), the model reference's fields under stages.caption.model."""
    from syngen.refs import ModelRef

    found = []
    for where, model in [*_sections(), ("stages.caption.model", ModelRef)]:
        for key, info in model.model_fields.items():
            kinds = _kinds(info.annotation)
            if bool in wanted and bool not in kinds or bool not in wanted and not kinds & set(wanted):
                continue
            container = typing.get_origin(info.annotation) in (list, tuple)
            found.append(pytest.param(where, key, container, id=f"{where}.{key}".lstrip(".")))
    return found


def _refused(tmp_path: Path, where: str, key: str, value: Any) -> str:
    data = quickstart_data()
    if where == "stages.caption.model":
        data["stages"]["caption"]["model"] = {"id": "tiny:captioner-blip", key: value}
    else:
        _set(data, where, key, value)
    path = write(tmp_path, data)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    return str(err.value).removeprefix(f"{path}: ")


@pytest.mark.parametrize("where, key, container", _typed_fields(bool))
@pytest.mark.parametrize("value", ["yes", "true", 1, 0.0], ids=["yes", "true-string", "one", "zero-float"])
def test_every_flag_takes_only_true_or_false(tmp_path: Path, where: str, key: str, container: bool, value: Any) -> None:
    """A string or a number is never a flag: `trust_remote_code: "yes"` would otherwise turn remote code on."""
    message = _refused(tmp_path, where, key, value)
    assert message.startswith(f"{where}.{key}: expected true or false (got ".lstrip(".")), message


@pytest.mark.parametrize("where, key, container", _typed_fields(int, float))
def test_no_number_takes_a_boolean(tmp_path: Path, where: str, key: str, container: bool) -> None:
    """Optional numbers (memory_budget, nms_iou, limit, min_mask_score) and the items of lists of numbers too."""
    message = _refused(tmp_path, where, key, [0.5, True] if container else True)
    field = f"{where}.{key}{'.1' if container else ''}".lstrip(".")
    assert message == f"{field}: expected a number, got the boolean true"


@pytest.mark.parametrize("where, key, container", _typed_fields(float))
@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan], ids=["inf", "minus-inf", "nan"])
def test_every_float_is_finite(tmp_path: Path, where: str, key: str, container: bool, value: float) -> None:
    message = _refused(tmp_path, where, key, [0.5, value] if container else value)
    field = f"{where}.{key}{'.1' if container else ''}".lstrip(".")
    assert message.startswith(f"{field}: Input should be a finite number"), message


@pytest.mark.parametrize(
    "where, key, value, accepted",
    [
        pytest.param("stages.synthesize", "width", 16384, True, id="width-16384"),
        pytest.param("stages.synthesize", "width", 16392, False, id="width-16392"),
        pytest.param("stages.synthesize", "height", 10**9, False, id="height-1e9"),
        pytest.param("stages.synthesize", "height", 132, False, id="height-not-multiple-of-8"),
        pytest.param("stages.views", "size", 16385, False, id="view-size-16385"),
        *[
            pytest.param(f"stages.{stage}", "seed", seed, seed < 2**63, id=f"{stage}-seed-{label}")
            for stage in ("synthesize", "negatives", "views")
            for seed, label in ((2**63 - 1, "2^63-1"), (2**63, "2^63"), (2**70, "2^70"))
        ],
        pytest.param("", "name", "n" * 255, True, id="name-255"),
        pytest.param("", "name", "n" * 256, False, id="name-256"),
        pytest.param("source", "path", "", False, id="empty-source-path"),
        pytest.param("source", "path", "   ", False, id="blank-source-path"),
        pytest.param("stages.caption", "prompt", "", False, id="empty-caption-prompt"),
        pytest.param("stages.phrases", "prompt", "", False, id="empty-phrases-prompt"),
        pytest.param("output", "dir", "", False, id="empty-output-dir"),
        pytest.param("output", "push_to_hub", "me/my-data", True, id="hub-id"),
        pytest.param("output", "push_to_hub", "my-data", True, id="hub-name-only"),
        pytest.param("output", "push_to_hub", "<user>/quickstart", False, id="hub-placeholder"),
        pytest.param("output", "push_to_hub", "me/my data", False, id="hub-space"),
        pytest.param("output", "push_to_hub", "a/b/c", False, id="hub-three-parts"),
        pytest.param("output", "push_to_hub", "me/" + "x" * 97, False, id="hub-too-long"),
        pytest.param("output", "push_to_hub", "me/a--b", False, id="hub-double-dash"),
    ],
)
def test_bounds(tmp_path: Path, where: str, key: str, value: Any, accepted: bool) -> None:
    """Sizes a GPU can make, seeds a generator takes, names a file system takes, paths that name something, and
    a Hub repo id checked by `validate` rather than by the push at the end of the run."""
    data = quickstart_data()
    _set(data, where, key, value)
    path = write(tmp_path, data)
    if accepted:
        assert load_recipe(path).name
        return
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"{path}: {where}.{key}: ".replace(": .", ": ")), str(err.value)
    assert len(str(err.value)) < 400


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    "text, expected",
    [
        pytest.param(f"name: t\nsource: {_nested(5000)}\n", "values nested more than 64 deep", id="list-5000-deep"),
        pytest.param("name: t\nsource: " + "{a: " * 5000 + "1" + "}" * 5000, "nested more than 64", id="map-5000"),
        pytest.param(
            "name: t\nsource:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(100)),
            'nested more than 64 deep in "{path}", line 65',
            id="block-100-deep",
        ),
        pytest.param("name: t\nruntime: {wave_size: " + "9" * 5000 + "}\n", "a number of 5000 characters", id="int"),
        pytest.param("name: t\nruntime: {memory_budget: 1" + "0" * 400 + ".5}\n", "number of 403", id="float"),
        pytest.param("name: t\nruntime: {wave_size: 2024-13-45}\n", "'2024-13-45' as timestamp: month", id="date"),
        pytest.param(
            "name: t\nruntime:\n\twave_size: 2\n",
            'in "{path}", line 3, column 1. Line 3 holds a tab: YAML indents with spaces only',
            id="tab",
        ),
        pytest.param("name: t\n# " + "x" * (1 << 20) + "\n", "over 1048576 bytes", id="over-1-mib"),
    ],
)
def test_yaml_reader_refuses_what_would_crash_it(tmp_path: Path, text: str, expected: str) -> None:
    """Nesting that would exhaust Python's stack, numbers Python will not convert, dates that do not exist, tabs
    and oversized files: one line naming the file (and the line), never a traceback."""
    path = tmp_path / "r.yaml"
    path.write_text(text)
    with pytest.raises(RecipeError) as err:
        load_recipe(path)
    assert str(err.value).startswith(f"{path}: ") and expected.format(path=path) in str(err.value), str(err.value)
    assert len(str(err.value)) < 400


def test_nesting_up_to_the_limit_is_read(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text(f"a: {_nested(63)}\n")  # the mapping is the 64th level
    assert read_yaml(path)[1]["a"] == json.loads(_nested(63))


@pytest.mark.parametrize(
    "uses, expected",
    [
        pytest.param(1, None, id="one-use-15003-values"),
        pytest.param(2, "uses 1 aliases and expands to 30005 values", id="two-uses-30005-values"),
    ],
)
def test_the_expanded_value_limit_counts_a_shared_node_at_each_use(tmp_path: Path, uses: int, expected: str) -> None:
    """One alias, far below the alias limit: the value limit alone decides, and it counts the 15,000 values of
    the shared list once per use (counted once, the document would pass)."""
    path = tmp_path / "r.yaml"
    items = ", ".join(["1"] * 15_000)
    path.write_text(f"a: &a [{items}]\n" + ("b: *a\n" if uses == 2 else ""))
    if expected is None:
        assert len(read_yaml(path)[1]["a"]) == 15_000
        return
    with pytest.raises(RecipeError, match=expected):
        read_yaml(path)


def test_the_expanded_value_limit_holds_without_aliases(tmp_path: Path) -> None:
    path = tmp_path / "r.yaml"
    path.write_text("a: [" + ", ".join(["1"] * 20_000) + "]\n")
    with pytest.raises(RecipeError, match="uses 0 aliases and expands to 20003 values"):
        read_yaml(path)


@pytest.mark.parametrize(
    ("value", "error"),
    [
        pytest.param("auto", None, id="auto"),
        pytest.param(1, None, id="one"),
        pytest.param(64, None, id="many"),
        pytest.param(0, "cpu_threads: expected auto or a whole number of threads >= 1 \\(got 0\\)", id="zero"),
        pytest.param(-2, "cpu_threads: expected auto or a whole number of threads >= 1", id="negative"),
        pytest.param("2", "cpu_threads: expected auto or a whole number of threads >= 1", id="number-as-text"),
        pytest.param(True, "cpu_threads: expected a number, got the boolean true", id="boolean"),
        pytest.param(1.5, "cpu_threads: expected auto or a whole number of threads >= 1", id="fraction"),
        pytest.param("all", "cpu_threads: expected auto or a whole number of threads >= 1", id="unknown-word"),
    ],
)
def test_cpu_threads_is_auto_or_a_count(tmp_path: Path, value: Any, error: str | None) -> None:
    recipe = base()
    recipe.setdefault("runtime", {})["cpu_threads"] = value
    if error is None:
        assert load_recipe(write(tmp_path, recipe)).top.runtime.cpu_threads == value
    else:
        with pytest.raises(RecipeError, match=error):
            load_recipe(write(tmp_path, recipe))


def test_cpu_threads_leaves_the_fingerprints_alone(tmp_path: Path) -> None:
    """A runtime setting: the stages' fingerprints, hence their stored results, do not depend on it."""
    from syngen.stages import stage_class

    def fingerprints(threads: Any) -> list[dict]:
        recipe = base()
        recipe.setdefault("runtime", {})["cpu_threads"] = threads
        loaded = load_recipe(write(tmp_path, recipe))
        return [stage_class(n)(c, loaded.context()).fingerprint() for n, c in loaded.stages.items()]

    assert fingerprints("auto") == fingerprints(1) == fingerprints(7)
