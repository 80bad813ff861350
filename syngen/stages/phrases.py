"""phrases: short noun phrases of each caption, extracted by an LLM (docs/methods.md#phrases-and-grounding).

Needs ``caption``; adds ``phrases`` (list of lower-case strings, each found in the caption). The prompt file's
``{caption}`` placeholder is replaced by the caption (cut to what fits the LLM's context with the answer, counted
as ``truncated_captions``) and sent as one chat message; the answer is parsed with
:func:`parse_phrases`. An answer with no usable phrase is a failure of kind ``no_phrases`` whose message holds
the raw answer (truncated).

Example::

    >>> parse_phrases('Sure! ["A red ball", "the table", "a cat"]', "A red ball on the table.", 4, 10)
    ['a red ball', 'the table']
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

from datasets import List, Value
from pydantic import Field

from syngen.columns import Column
from syngen.models.roles import ChatLLM
from syngen.refs import ModelRef
from syngen.sample import Failure, Sample
from syngen.settings import SomePath
from syngen.stages.base import Context, ModelStageConfig, Outcome, Stage, model_field

PLACEHOLDER = "{caption}"


class PhrasesConfig(ModelStageConfig):
    """Settings of the phrases stage."""

    model: ModelRef = model_field("tiny:llm", "Instruction-tuned causal LM with a chat template (backend causal-lm).")
    prompt: SomePath = Field(
        "prompts/phrases.txt", description=f"Prompt file; {PLACEHOLDER} is replaced by the caption."
    )
    max_new_tokens: int = Field(128, ge=1, le=4096, description="Longest LLM answer, in tokens.")
    max_phrases: int = Field(10, ge=1, description="Keep at most this many phrases per caption (first ones first).")
    max_words: int = Field(4, ge=1, description="Drop longer phrases (in words): short phrases ground better.")
    batch_size: int = Field(16, ge=1, description="Captions per LLM call; halved and retried on CUDA out-of-memory.")


class Phrases(Stage[PhrasesConfig, ChatLLM]):
    """Asks the LLM for the caption's short noun phrases and keeps those that occur in the caption."""

    name = "phrases"
    needs = ("caption",)
    adds = ("phrases",)
    publishes = {"phrases": Column(List(Value("string")), "short phrases the LLM took from the caption")}
    Config = PhrasesConfig
    role = "llm"
    default_backend = "causal-lm"

    def __init__(self, config: PhrasesConfig, ctx: Context):
        super().__init__(config, ctx)
        path = ctx.resolve_path(config.prompt)
        self.template = path.read_text(encoding="utf-8")
        if PLACEHOLDER not in self.template:
            raise ValueError(f"prompt file {path} has no {PLACEHOLDER} placeholder")

    def process(self, samples: list[Sample], model: ChatLLM) -> list[Outcome]:
        cfg = self.config
        fit = getattr(model, "fit", None)  # an adapter that knows its context length cuts what does not fit
        frame = self.template.replace(PLACEHOLDER, "")
        texts = [fit(s["caption"], frame, cfg.max_new_tokens) if fit else s["caption"] for s in samples]
        # str.replace, not str.format: prompt files hold JSON examples with braces
        prompts = [self.template.replace(PLACEHOLDER, text) for text in texts]
        answers = model.chat(prompts, cfg.max_new_tokens)
        results: list[Outcome] = []
        for sample, text, answer in zip(samples, texts, answers, strict=True):
            phrases = parse_phrases(answer, sample["caption"], cfg.max_words, cfg.max_phrases)
            if phrases:
                cut = {"phrases_stats": {"truncated_captions": 1}} if text != sample["caption"] else {}
                results.append({"phrases": phrases} | cut)
            else:
                message = f"no usable phrase in the LLM answer: {repr(answer)[:300]}"
                results.append(Failure(kind="no_phrases", message=message))
        return results


def parse_phrases(answer: str, caption: str, max_words: int, max_phrases: int) -> list[str]:
    """The phrases of an LLM ``answer`` that occur in ``caption``, read as a person would: lower-cased, in order.

    A reasoning block (``<think>...</think>``) is skipped. The answer's first JSON array holding strings that
    yields a phrase is read (an empty array, citation numbers such as ``[1]`` or an example list before it are
    passed over); otherwise its lines: a header ending in ":" (also on the list's own line, "Phrases: a, b") is
    dropped, items are split at commas and semicolons (and at the "and" before a list's last item). Each item
    loses its numbering (``1.``, ``1)``, ``1 -``, ``(1)``), bullet (``-``, ``*``, ``•``, en or em dash),
    markdown emphasis, an explanation after it (``a man - the person``, ``a man: ...``, ``a man (...)``),
    quotes and trailing punctuation. Kept: phrases of at most ``max_words`` words that occur in the caption as
    whole words (case-insensitive; returned as the caption writes them, lower-cased), the first of those that
    differ only in case or a leading article, at most ``max_phrases`` of them (counted after this filtering).
    Never raises on junk: returns [] when nothing is usable.
    """
    answer = _REASONING.sub(" ", answer.translate(_QUOTES))
    text = " ".join(caption.split())
    for items in _json_arrays(answer):
        phrases = _keep(items, text, max_words, max_phrases)
        if phrases:
            return phrases
    return _keep(_line_items(answer), text, max_words, max_phrases)


_REASONING = re.compile(r"<(think|thinking|reasoning)>.*?(?:</\1>|$)", re.DOTALL | re.IGNORECASE)
_QUOTES = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"'})
_MARKER = re.compile(r"^\s*(?:[-*+\u2022\u2013\u2014\u00b7]+(?=\s)|\(\d+\)|\d+\s*[.):]|\d+\s+[-\u2013\u2014](?=\s))\s*")
_EMPHASIS = re.compile(r"\*+|`+|(?<!\w)_+|_+(?!\w)")
_EXPLANATION = re.compile(r"\s+[-\u2013\u2014=]\s|:|\s\(")
_ARTICLE = re.compile(r"^(?:a|an|the)\s+")
_EDGE_CHARS = " \t\"'[]{}().,;:!?"


def _json_arrays(text: str) -> Iterator[list[str]]:
    """The string items of each JSON array in ``text`` that holds any, in order."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\[", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, list) and any(isinstance(item, str) for item in value):
            yield [item for item in value if isinstance(item, str)]


def _line_items(text: str) -> list[str]:
    """The items of a plain-text answer: one list item per line, or comma-separated items after a header."""
    items = []
    for line in text.splitlines():
        marked = _MARKER.match(line)
        if marked:  # "1. **a man**: the person": the item is before the explanation
            items.append(_EXPLANATION.split(_EMPHASIS.sub("", line[marked.end() :]), maxsplit=1)[0])
            continue
        line = _EMPHASIS.sub("", line)
        pieces = re.split(r"[,;]", line.split(":", 1)[-1])  # "Phrases: a, b, and c" -> "a", "b", "and c"
        if len(pieces) > 1:
            pieces[-1:] = re.split(r"^\s*(?:and|or)\s+|\s+(?:and|or)\s+", pieces[-1])
        items += pieces
    return items


def _keep(items: list[str], text: str, max_words: int, max_phrases: int) -> list[str]:
    """The usable phrases of ``items``: cleaned, in ``text`` (the caption) as whole words, short, first of each."""
    phrases: dict[str, str] = {}  # article-less key -> phrase
    searchable = text.translate(_QUOTES)  # same length as text: a match's span is the caption's own words
    for item in items:
        cleaned = _EMPHASIS.sub("", _MARKER.sub("", item.strip()))
        cleaned = _EXPLANATION.split(cleaned, maxsplit=1)[0]
        phrase = " ".join(cleaned.strip(_EDGE_CHARS).split())
        if not phrase or len(phrase.split()) > max_words:
            continue
        found = re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", searchable, re.IGNORECASE)
        if found:
            phrase = text[found.start() : found.end()].lower()
            phrases.setdefault(_ARTICLE.sub("", phrase), phrase)
        if len(phrases) == max_phrases:
            break
    return list(phrases.values())
