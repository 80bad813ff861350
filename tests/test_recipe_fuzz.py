"""`syngen validate` on generated recipes: wrong types, values past their bounds, unicode, deep nesting, large
sizes and broken YAML. None may print a traceback or hang; a refusal exits 2 with one paragraph that starts with
the field it is about (or "not valid YAML" and the line), and a recipe that is right validates.

The recipes are drawn from the quickstart with a fixed seed, one mutation each, and validated by the command in
this process, so that hundreds take seconds. ``python -m pytest -q -s tests/test_recipe_fuzz.py`` prints the tally.
"""

from __future__ import annotations

import io
import random
import signal
import time
import typing
from collections import Counter
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from copy import deepcopy
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import typer.main
import yaml
from pydantic import BaseModel

from syngen.cli import app
from syngen.errors import excerpt
from syngen.recipe import MAX_BYTES, OutputConfig, RecipeModel, RuntimeConfig
from syngen.refs import ModelRef
from syngen.stages import STAGES, stage_class

REPO = Path(__file__).resolve().parent.parent
SEED = 22
HANG_S = 30  # a recipe still validating after this long has hung


@dataclass
class Case:
    """A generated recipe: its category, its text, and what must happen: refused naming ``names`` first (a field,
    or "not valid YAML"), accepted (``names`` None), or either (``either``: a refusal still names ``names``)."""

    category: str
    what: str
    text: str | bytes
    names: str | None
    either: bool = False
    line: bool = False  # the refusal also says which line


def quickstart() -> dict[str, Any]:
    return yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())


def dump(data: Any) -> str:
    dumper = getattr(yaml, "CSafeDumper", yaml.SafeDumper)  # libyaml's: a tenth of the time
    return yaml.dump(data, Dumper=dumper, allow_unicode=True, sort_keys=False)


def sections() -> list[tuple[str, type[BaseModel]]]:
    """Every model a recipe holds, by where it is (the model reference at stages.caption.model)."""
    named = [("", RecipeModel), ("runtime", RuntimeConfig), ("output", OutputConfig)]
    named += [("source" if n == "source" else f"stages.{n}", stage_class(n).Config) for n in STAGES]
    return [*named, ("stages.caption.model", ModelRef)]


def put(data: dict[str, Any], where: str, key: str, value: Any) -> dict[str, Any]:
    data = deepcopy(data)
    section = data
    for part in [p for p in where.split(".") if p]:
        if not isinstance(section.get(part), dict):
            section[part] = {"id": section[part]} if part == "model" else {}
        section = section[part]
    section[key] = value
    return data


def kinds(annotation: Any) -> set[Any]:
    args = typing.get_args(annotation)
    return {annotation}.union(*(kinds(a) for a in args)) if args else {annotation}


WRONG = {  # values no field of that kind may take
    "flag": ["yes", "no", "on", 1, 0, 1.0, "true", [], {}],
    "int": [True, False, "8", 2.5, "ten", [], {}, [1]],
    "float": [True, "0.5", "nan", [], {}, {"x": 1.0}],
    "text": [1, 2.5, True, [], {}, ["a"]],
    "model": [1, True, [], "", 2.5],
    "section": ["x", 1, [], True],
}
UNICODE = ["é", "日本語", "🚀🚀", "\u202eevil", "zero\u200bwidth", "a\x00b", "[/]", "[bold]x[/bold]", "ℌ𝔢𝔩𝔩𝔬"]


def kind_of(annotation: Any) -> str:
    found = kinds(annotation)
    if ModelRef in found:
        return "model"
    if bool in found:
        return "flag"
    if typing.get_origin(annotation) is dict or any(isinstance(k, type) and issubclass(k, BaseModel) for k in found):
        return "section"
    if float in found:
        return "float"
    if int in found:
        return "int"
    return "text"  # str, or a Literal of strings


def bounds(info: Any) -> dict[str, Any]:
    return {
        a: getattr(m, a) for m in info.metadata for a in ("ge", "gt", "le", "lt") if getattr(m, a, None) is not None
    }


def breaks(value: float, limits: dict[str, Any]) -> bool:
    return any(
        (name == "ge" and value < bound)
        or (name == "gt" and value <= bound)
        or (name == "le" and value > bound)
        or (name == "lt" and value >= bound)
        for name, bound in limits.items()
    )


def types(rng: random.Random, base: dict[str, Any]) -> Iterator[Case]:
    for where, model in sections():
        for key, info in model.model_fields.items():
            kind = kind_of(info.annotation)
            field = f"{where}.{key}".lstrip(".")
            for value in rng.sample(WRONG[kind], 2):
                yield Case("types", f"{field}={value!r}", dump(put(base, where, key, value)), field)


def bounded(rng: random.Random, base: dict[str, Any]) -> Iterator[Case]:
    extremes = [10**9, -(10**9), 2**63, 2**70, 1e300, -1e300, -1, 0]
    for where, model in sections():
        for key, info in model.model_fields.items():
            limits = bounds(info)
            if not limits:
                continue
            field = f"{where}.{key}".lstrip(".")
            is_int = int in kinds(info.annotation)
            outside = [bound + (-1 if name in ("ge", "gt") else 1) for name, bound in limits.items()]
            for value in [*outside, *rng.sample(extremes, 2)]:
                value = int(value) if is_int and abs(value) < 2**80 else value
                text = dump(put(base, where, key, value))
                if breaks(value, limits) or (is_int and isinstance(value, float)):
                    yield Case("bounds", f"{field}={value!r}", text, field)
                else:  # within the field's bounds; a check across fields may still refuse it
                    yield Case("bounds", f"{field}={value!r}", text, where, either=True)
    for width in (8, 16384, 16392, 10**9, 100):
        ok = width % 8 == 0 and width <= 16384
        text = dump(put(base, "stages.synthesize", "width", width))
        yield Case("bounds", f"width={width}", text, None if ok else "stages.synthesize.width")


def unicode(rng: random.Random, base: dict[str, Any]) -> Iterator[Case]:
    for text in UNICODE:
        yield Case("unicode", f"name={text!r}", dump(put(base, "", "name", text)), "name")
        yield Case("unicode", f"description={text!r}", dump(put(base, "", "description", text)), None)
        target = rng.choice([("output", "pretty_name"), ("output", "license")])
        yield Case("unicode", f"{target[1]}={text!r}", dump(put(base, *target, text)), None)
        yield Case("unicode", f"source.path={text!r}", dump(put(base, "source", "path", text)), "source.path")
        key = text.replace("\x00", "")
        yield Case("unicode", f"key {key!r}", dump(put(base, "runtime", key, 1)), f"runtime.{key}")
    for escape in ("\\udc80", "\\ud800"):  # a lone surrogate, as YAML's escapes can write it
        text = dump(base) + f'description: "a{escape}b"\n'
        yield Case("unicode", f"surrogate {escape}", text, "not valid YAML", line=True)


def nesting(rng: random.Random, base: dict[str, Any]) -> Iterator[Case]:
    places = [("", "description"), ("source", "extra"), ("stages.caption", "max_new_tokens"), ("runtime", "deep")]
    for depth in (2, 10, 40, 100, 1000, 5000):
        for where, key in rng.sample(places, 2):
            mapping = rng.random() < 0.5
            data = put(base, where, key, "DEEP")
            flow = "{a: " * depth + "1" + "}" * depth if mapping else "[" * depth + "]" * depth
            text = dump(data).replace("DEEP", flow, 1)  # yaml.safe_dump would recurse as deep
            field = f"{where}.{key}".lstrip(".")
            yield Case(
                "nesting", f"{field} {depth} deep", text, field if depth < 60 else "not valid YAML", line=depth > 60
            )


def sizes(rng: random.Random, base: dict[str, Any]) -> Iterator[Case]:
    for length in (255, 256, 5000):
        yield Case(
            "sizes", f"name of {length}", dump(put(base, "", "name", "n" * length)), "name" if length > 255 else None
        )
    yield Case("sizes", "description of 100 kB", dump(put(base, "", "description", "é " * 50_000)), None)
    big = dump(base) + "# " + "x" * MAX_BYTES + "\n"
    yield Case("sizes", "file over 1 MiB", big, f"over {MAX_BYTES} bytes")
    key = "k" * 10_000
    yield Case("sizes", "key of 10,000", dump(put(base, "", key, 1)), excerpt(key))
    yield Case("sizes", "stage of 10,000", dump(put(base, "stages", key, {})), f"stages.{excerpt(key)}")
    many = [round(rng.uniform(0.01, 1), 6) for _ in range(2_000)]
    yield Case("sizes", "2,000 candidates", dump(put(base, "stages.views", "candidates", sorted(set(many)))), None)
    yield Case(
        "sizes", "25,000 candidates", dump(put(base, "stages.views", "candidates", [0.5] * 25_000)), "not valid YAML"
    )
    for digits in (19, 20, 101, 5000):
        text = dump(put(base, "stages.views", "seed", 0)).replace("seed: 0", "seed: " + "9" * digits)
        names = "stages.views.seed" if digits <= 100 else "not valid YAML"
        yield Case("sizes", f"seed of {digits} digits", text, names, line=digits > 100)
    yield Case("sizes", "batch_size 2**62", dump(put(base, "stages.caption", "batch_size", 2**62)), None)


def broken_yaml(rng: random.Random, base: dict[str, Any]) -> Iterator[Case]:
    text = dump(base)
    lines = text.splitlines(keepends=True)
    for n in rng.sample([i for i, line in enumerate(lines) if line.startswith("  ")], 4):
        tabbed = "".join(lines[:n] + ["\t" + lines[n].lstrip(" ")] + lines[n + 1 :])
        yield Case("yaml", f"tab on line {n + 1}", tabbed, "not valid YAML", line=True)
    bomb = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    )
    refused = {
        "unclosed bracket": (text + "extra: [1, 2\n", True),
        "duplicate key": (text + "name: again\n", True),
        "alias bomb": (bomb, False),
        "recursive alias": ("name: t\nsource: &s [*s]\n", None),
        "python tag": ("name: !!python/object/apply:os.system [echo]\n", True),
        "undefined alias": ("name: *nothing\n", True),
        "nul character": (text.replace("quickstart", "quick\x00start", 1), False),
        "two documents": (text + "---\n" + text, True),
        "bad date": (text.replace("wave_size: 4", "wave_size: 2024-02-30"), True),
        "huge float": (text.replace("wave_size: 4", "wave_size: 1" + "0" * 500 + ".0"), True),
    }
    for what, (body, line) in refused.items():
        names = "source" if line is None else "not valid YAML"
        yield Case("yaml", what, body, names, line=bool(line))
    yield Case("yaml", "not UTF-8", text.encode() + b"description: caf\xe9\n", "not UTF-8 text")
    yield Case("yaml", "empty file", "", "expected a mapping")
    yield Case("yaml", "a list", "- name: t\n", "expected a mapping")
    yield Case("yaml", "byte order mark", "\ufeff" + text, None)
    yield Case("yaml", "binary name", "name: !!binary aGVsbG8=\n" + text.split("\n", 1)[1], "name")
    yield Case("yaml", "merge keys", "x: &x {wave_size: 2}\n" + text.replace("runtime:", "runtime:\n  <<: *x"), "x")


GENERATORS = {
    "types": types,
    "bounds": bounded,
    "unicode": unicode,
    "nesting": nesting,
    "sizes": sizes,
    "yaml": broken_yaml,
}


def generate() -> list[Case]:
    rng = random.Random(SEED)
    base = quickstart()  # its seeds/ and prompts/ are found among the bundled files from any folder
    return [case for generator in GENERATORS.values() for case in generator(rng, base)]


class Hung(Exception):
    pass


def _hang(signum: int, frame: Any) -> None:
    raise Hung()


def validate(command: Any, path: Path) -> tuple[int, str, BaseException | None]:
    """`syngen validate PATH` in this process: its exit code, what it printed, and what it raised (it should not)."""
    out = io.StringIO()
    signal.alarm(HANG_S)
    try:
        with redirect_stdout(out), redirect_stderr(out):
            code = command.main(["validate", str(path)], prog_name="syngen", standalone_mode=False)
    except BaseException as err:  # a traceback the user would see, or a hang
        return -1, out.getvalue(), err
    finally:
        signal.alarm(0)
    return code or 0, out.getvalue(), None


def test_generated_recipes_are_refused_cleanly_or_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cases = generate()
    monkeypatch.chdir(tmp_path)  # short relative paths: the message starts with them
    command = typer.main.get_command(app)  # built once: CliRunner builds it again for every call
    tally: Counter[str] = Counter()
    problems = []
    previous = signal.signal(signal.SIGALRM, _hang)
    try:
        for i, case in enumerate(cases):
            path = Path(f"r{i}.yaml")
            if isinstance(case.text, bytes):
                path.write_bytes(case.text)
            else:
                path.write_text(case.text, encoding="utf-8", errors="surrogateescape")
            start = time.monotonic()
            code, printed, raised = validate(command, path)
            seconds = time.monotonic() - start
            output = " ".join(printed.split())  # the console's line wrapping undone
            refused = code == 2
            tally[case.category] += 1
            tally["refused" if refused else "accepted"] += 1
            why = None
            if raised is not None:
                why = f"raised {type(raised).__name__}: {excerpt(str(raised), 200)}"
            elif "Traceback" in printed or code not in (0, 2):
                why = f"exit {code}"
            elif refused and case.names is None and not case.either:
                why = "refused a right recipe"
            elif not refused and case.names is not None and not case.either:
                why = "accepted"
            elif refused and not output.startswith(f"error: {path}: {case.names or ''}"):
                why = "the refusal does not start with what it is about"
            elif refused and (output.count("error:") != 1 or len(output) > 1200):
                why = "more than one short paragraph"
            elif refused and case.line and "line " not in output:
                why = "no line named"
            elif seconds > 10:
                why = f"took {seconds:.1f} s"
            if why:
                problems.append(f"{case.category} / {case.what}: {why}: {output[:300]}")
    finally:
        signal.signal(signal.SIGALRM, previous)
    print(
        f"\nfuzzed {len(cases)} recipes ("
        + ", ".join(f"{name} {tally[name]}" for name in GENERATORS)
        + f"): {tally['refused']} refused, {tally['accepted']} accepted, {len(problems)} problems"
    )
    assert not problems, "\n".join(problems)
    assert len(cases) >= 100 and all(tally[name] for name in GENERATORS)
