"""The phrases stage: defensive parsing of LLM answers, the prompt file, the Qwen2 twin end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syngen.models.loading import load
from syngen.refs import ModelRef
from syngen.sample import Failure
from syngen.stages.base import Context
from syngen.stages.phrases import Phrases, PhrasesConfig, parse_phrases
from tests.fakes import FakeLLM

CAPTION = "A red ball on the wooden table, next to a small dog and a man's hat."


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ('["a red ball", "the wooden table"]', ["a red ball", "the wooden table"]),
        ('Sure! Here they are: ["A small dog", "hat"] Hope it helps [1]', ["a small dog", "hat"]),
        ("1. a red ball\n2) the wooden table\n(3) a small dog", ["a red ball", "the wooden table", "a small dog"]),
        ("- a red ball\n* 'the wooden table'\n• **a small dog**", ["a red ball", "the wooden table", "a small dog"]),
        ("a red ball, the wooden table; a man's hat.", ["a red ball", "the wooden table", "a man's hat"]),
        ("\n\n ,\n;;\n--\n", []),
        ('["a blue car", "ball", "red ball"]', ["ball", "red ball"]),
        ('["a red ball", "A Red Ball", "a  red ball "]', ["a red ball"]),
        ('["a red ball on the wooden table", "table"]', ["table"]),
        ('[1, null, {"p": "dog"}, ["hat"], "dog"]', ["dog"]),
        ('["a red ball", "the wooden table"', ["a red ball", "the wooden table"]),
        ("the wooden tab\nall\nsmall dogs", []),
    ],
    ids=[
        "json-array",
        "json-inside-prose",
        "numbered-list",
        "bullets",
        "comma-list",
        "junk-newlines",
        "phrase-not-in-caption",
        "duplicates",
        "too-long",
        "non-string-json-items",
        "unbalanced-bracket",
        "partial-words-only",
    ],
)
def test_parse_phrases(answer: str, expected: list[str]) -> None:
    assert parse_phrases(answer, CAPTION, max_words=4, max_phrases=10) == expected


def test_parse_phrases_keeps_the_first_max_phrases() -> None:
    assert parse_phrases("dog, hat, table, ball", CAPTION, max_words=4, max_phrases=2) == ["dog", "hat"]


def test_prompt_gets_the_caption_and_junk_is_a_failure(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text('Phrases of {caption} as JSON, like ["a dog"]')
    stage = Phrases(PhrasesConfig(prompt="p.txt"), Context(recipe_dir=tmp_path))
    llm = FakeLLM(['["a dog"]', "I cannot help with that.\n" * 40])
    results = stage.process([{"id": "a", "caption": "a dog"}, {"id": "b", "caption": "a cat"}], llm)
    assert llm.prompts == [f'Phrases of {c} as JSON, like ["a dog"]' for c in ("a dog", "a cat")]
    assert results[0] == {"phrases": ["a dog"]}
    failure = results[1]
    assert isinstance(failure, Failure) and failure.kind == "no_phrases"
    assert "I cannot help with that" in failure.message and len(failure.message) < 400


def test_prompt_without_placeholder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "p.txt").write_text("List the phrases.")
    with pytest.raises(ValueError, match="placeholder"):
        Phrases(PhrasesConfig(prompt="p.txt"), Context(recipe_dir=tmp_path))


def test_tiny_llm_answers_parse_into_caption_phrases(tmp_path: Path) -> None:
    config = PhrasesConfig(model=ModelRef(id="tiny:llm"), max_new_tokens=24)
    stage = Phrases(config, Context(recipe_dir=tmp_path))
    llm, _ = load(config.model, Phrases.default_backend, "cpu", "float32")
    captions = ["shape plate wall image box bottom sky three chair", "nothing in common here"]
    results: list[Any] = stage.process([{"id": str(i), "caption": c} for i, c in enumerate(captions)], llm)
    assert results[0]["phrases"] and all(p in captions[0].split() for p in results[0]["phrases"])
    assert isinstance(results[1], Failure) and results[1].kind == "no_phrases"
