"""The phrases stage: defensive parsing of LLM answers, the prompt file, the Qwen2 twin end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from syngen.devtools.fakes import FakeLLM
from syngen.models.loading import load
from syngen.refs import ModelRef
from syngen.sample import Failure
from syngen.stages.base import Context
from syngen.stages.phrases import Phrases, PhrasesConfig, parse_phrases

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


SCENE = (
    "A young woman in a red coat walks a small dog past the old church while a man's hat lies on the wet street "
    "near two bicycles."
)

# Realistic LLM answers and the phrases a person would take from them (max_words 4, max_phrases 10).
ANSWERS = [
    pytest.param(
        '["a young woman", "a red coat", "a small dog"]', ["a young woman", "a red coat", "a small dog"], id="json"
    ),
    pytest.param(
        'Sure! Here are the noun phrases:\n["a young woman", "the old church"]',
        ["a young woman", "the old church"],
        id="json-after-preamble",
    ),
    pytest.param(
        '<think>The user wants phrases like ["a car"]. Let me look.</think>\n["a small dog", "two bicycles"]',
        ["a small dog", "two bicycles"],
        id="think-block-then-json",
    ),
    pytest.param(
        "<think>\nwoman, dog\n</think>\n- the wet street\n- a man's hat",
        ["the wet street", "a man's hat"],
        id="think-block-then-bullets",
    ),
    pytest.param("<think>I should list a young woman and a small dog, then", [], id="unfinished-think-block"),
    pytest.param(
        'Based on the description [1], the phrases are ["a red coat", "the wet street"]',
        ["a red coat", "the wet street"],
        id="citation-before-json",
    ),
    pytest.param('[]\nSorry, let me try again: ["two bicycles"]', ["two bicycles"], id="empty-array-first"),
    pytest.param(
        'I found [3] phrases: ["a young woman", "a small dog", "the old church"]',
        ["a young woman", "a small dog", "the old church"],
        id="count-in-brackets-first",
    ),
    pytest.param(
        'Following the example ["a red car", "the man"], the answer is ["a man\'s hat", "the old church"]',
        ["a man's hat", "the old church"],
        id="example-array-first",
    ),
    pytest.param('```json\n["a young woman", "a small dog"]\n```', ["a young woman", "a small dog"], id="code-fence"),
    pytest.param(
        '{"phrases": ["the old church", "two bicycles"]}', ["the old church", "two bicycles"], id="json-object"
    ),
    pytest.param("['a red coat', 'the wet street']", ["a red coat", "the wet street"], id="python-list"),
    pytest.param(
        '[\n  "a young woman",\n  "a small dog",\n]', ["a young woman", "a small dog"], id="json-trailing-comma"
    ),
    pytest.param(
        "Phrases: a young woman, a red coat, a small dog",
        ["a young woman", "a red coat", "a small dog"],
        id="header-on-the-line",
    ),
    pytest.param(
        "**Noun phrases:** the old church; the wet street",
        ["the old church", "the wet street"],
        id="bold-header-on-the-line",
    ),
    pytest.param(
        "Phrases:\n1. the old church\n2. the wet street",
        ["the old church", "the wet street"],
        id="header-line-then-list",
    ),
    pytest.param("1. a young woman\n2. a red coat", ["a young woman", "a red coat"], id="numbered-dot"),
    pytest.param("1) a small dog\n2) two bicycles", ["a small dog", "two bicycles"], id="numbered-paren"),
    pytest.param("1 - the old church\n2 - a man's hat", ["the old church", "a man's hat"], id="numbered-dash"),
    pytest.param("(1) the wet street\n(2) a red coat", ["the wet street", "a red coat"], id="numbered-in-parens"),
    pytest.param("1: a young woman\n2: two bicycles", ["a young woman", "two bicycles"], id="numbered-colon"),
    pytest.param("- a young woman\n- a small dog", ["a young woman", "a small dog"], id="bullet-hyphen"),
    pytest.param("* the old church\n* two bicycles", ["the old church", "two bicycles"], id="bullet-star"),
    pytest.param("• a red coat\n• the wet street", ["a red coat", "the wet street"], id="bullet-dot"),
    pytest.param("– a man's hat\n– a small dog", ["a man's hat", "a small dog"], id="bullet-en-dash"),
    pytest.param("Objects:\n  - a small dog\n  - two bicycles", ["a small dog", "two bicycles"], id="indented-bullets"),
    pytest.param("1. **a young woman**\n2. **a small dog**", ["a young woman", "a small dog"], id="bold-items"),
    pytest.param(
        "- *the old church*\n- _two bicycles_\n- `a red coat`",
        ["the old church", "two bicycles", "a red coat"],
        id="italic-and-code-items",
    ),
    pytest.param(
        "1. a young woman - the person walking\n2. a small dog - her pet",
        ["a young woman", "a small dog"],
        id="explanation-after-dash",
    ),
    pytest.param(
        "- **a red coat**: what the woman wears\n* **the old church**: the building",
        ["a red coat", "the old church"],
        id="explanation-after-colon",
    ),
    pytest.param(
        "- a man's hat (on the street)\n- two bicycles (parked)",
        ["a man's hat", "two bicycles"],
        id="explanation-in-parens",
    ),
    pytest.param(
        "a small dog — an animal, the wet street — the road",
        ["a small dog", "the wet street"],
        id="explanation-after-em-dash",
    ),
    pytest.param("1. **Two bicycles** – parked near the street", ["two bicycles"], id="bold-numbered-explained"),
    pytest.param('"a young woman", "a red coat"', ["a young woman", "a red coat"], id="double-quotes"),
    pytest.param("“the old church”, ‘two bicycles’", ["the old church", "two bicycles"], id="curly-quotes"),
    pytest.param('["a man’s hat"]', ["a man's hat"], id="curly-apostrophe"),
    pytest.param("- a small dog.\n- the wet street.", ["a small dog", "the wet street"], id="trailing-periods"),
    pytest.param(
        '["A Small Dog", "a small dog", "the Old Church"]', ["a small dog", "the old church"], id="duplicates-by-case"
    ),
    pytest.param(
        '["old church", "the old church", "a small dog", "small dog"]',
        ["old church", "a small dog"],
        id="duplicates-by-article",
    ),
    pytest.param(
        "a young woman, a small dog and two bicycles",
        ["a young woman", "a small dog", "two bicycles"],
        id="and-before-last",
    ),
    pytest.param(
        "the old church, the wet street, and a man's hat",
        ["the old church", "the wet street", "a man's hat"],
        id="oxford-comma",
    ),
    pytest.param("A YOUNG WOMAN, THE OLD CHURCH", ["a young woman", "the old church"], id="upper-case"),
    pytest.param('["a   small  dog "]', ["a small dog"], id="extra-spaces"),
    pytest.param('["a young woman", "a blue car", "the sky"]', ["a young woman"], id="not-in-caption"),
    pytest.param('["a young woman in a red coat", "a red coat"]', ["a red coat"], id="too-long"),
    pytest.param('["woman in", "small do", "dog"]', ["woman in", "dog"], id="whole-words-only"),
    pytest.param(
        "Here are the phrases from the description:\n\n- a young woman\n- the wet street\n\nAnything else?",
        ["a young woman", "the wet street"],
        id="preamble-and-closing",
    ),
    pytest.param("I'm sorry, I can't help with that.", [], id="refusal"),
    pytest.param("\n\n\n", [], id="newlines-only"),
]


@pytest.mark.parametrize(("answer", "expected"), ANSWERS)
def test_parse_answers_as_a_person_reads_them(answer: str, expected: list[str]) -> None:
    assert parse_phrases(answer, SCENE, max_words=4, max_phrases=10) == expected


@pytest.mark.parametrize(
    ("max_words", "expected"),
    [(3, ["a young woman", "a man's hat", "dog"]), (2, ["dog"])],
    ids=["exactly-max-words-kept", "one-word-over-dropped"],
)
def test_max_words_is_inclusive(max_words: int, expected: list[str]) -> None:
    assert parse_phrases('["a young woman", "a man\'s hat", "dog"]', SCENE, max_words, 10) == expected


@pytest.mark.parametrize(
    "answer",
    [
        '["a blue car", "the sky", "a young woman", "a small dog", "two bicycles"]',
        '["a young woman", "A young woman", "the young woman", "a small dog", "two bicycles"]',
    ],
    ids=["unusable-items-first", "duplicates-first"],
)
def test_max_phrases_counts_kept_phrases(answer: str) -> None:
    assert parse_phrases(answer, SCENE, max_words=4, max_phrases=2) == ["a young woman", "a small dog"]


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


def test_a_caption_longer_than_the_context_is_cut_to_fit_and_counted(tmp_path: Path) -> None:
    config = PhrasesConfig(model=ModelRef(id="tiny:llm"), max_new_tokens=24)
    stage = Phrases(config, Context(recipe_dir=tmp_path))
    llm, _ = load(config.model, Phrases.default_backend, "cpu", "float32")
    sent: list[str] = []
    chat = llm.chat
    llm.chat = lambda prompts, n: sent.extend(prompts) or chat(prompts, n)
    words = ["shape", "plate", "wall", "image", "box", "bottom", "sky", "three", "chair"]
    long = " ".join(words[i % len(words)] for i in range(20_000))  # ~110 KB, far beyond the twin's 1024 tokens
    results: list[Any] = stage.process([{"id": "long", "caption": long}, {"id": "short", "caption": "a sky"}], llm)
    tokens = len(llm.tokenizer.encode(llm.chat_text(sent[0]), add_special_tokens=False))
    assert 1024 - 24 - 20 <= tokens <= 1024 - 24  # filled, not overfilled
    assert sent[1].count("a sky") == 1  # a short caption is sent whole
    assert not isinstance(results[0], Failure) and results[0]["phrases_stats"] == {"truncated_captions": 1}
    assert all(p in words for p in results[0]["phrases"])
    assert "phrases_stats" not in (results[1] if isinstance(results[1], dict) else {})


@pytest.mark.parametrize(
    "answer, kind",
    [
        pytest.param("", "no_phrases", id="empty"),
        pytest.param(", ".join(f"dog{i}" for i in range(5000)) + ", dog", "ok", id="thousands-of-phrases"),
        pytest.param('["a unicorn", "the moon"]', "no_phrases", id="not-in-caption"),
        pytest.param("\x00\ufffd" * 500, "no_phrases", id="binary-junk"),
    ],
)
def test_llm_edge_answers_are_handled_or_recorded(tmp_path: Path, answer: str, kind: str) -> None:
    (tmp_path / "p.txt").write_text("Phrases of {caption}")
    stage = Phrases(PhrasesConfig(prompt="p.txt", max_phrases=10), Context(recipe_dir=tmp_path))
    [result] = stage.process([{"id": "a", "caption": "a dog on a mat"}], FakeLLM([answer]))
    if kind == "ok":
        assert result == {"phrases": ["dog"]}
    else:
        assert isinstance(result, Failure) and result.kind == kind and len(result.message) < 400


@pytest.mark.parametrize(
    ("caption", "answer", "expected"),
    [
        pytest.param(
            "The dog’s “red” ball.", '["the dog\'s \\"red\\" ball"]', "the dog’s “red” ball", id="caption-curly"
        ),
        pytest.param('The dog\'s "red" ball.', '["the dog’s “red” ball"]', 'the dog\'s "red" ball', id="llm-curly"),
        pytest.param("A Man’s Hat", "- a MAN'S hat", "a man’s hat", id="case-and-apostrophe"),
    ],
)
def test_a_phrase_is_returned_as_the_caption_spells_it(caption: str, answer: str, expected: str) -> None:
    """The grounder and the dataset see the caption's own characters (curly or straight quotes), not the LLM's."""
    assert parse_phrases(answer, caption, max_words=5, max_phrases=5) == [expected]
