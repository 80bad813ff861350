"""phrases: short noun phrases of each caption, extracted by an LLM (METHODS.md §1).

Needs ``caption``; adds ``phrases`` (list of lower-case strings, each found in the caption). The prompt file's
``{caption}`` placeholder is replaced by the caption and sent as one chat message; the answer is parsed with
:func:`parse_phrases`. An answer with no usable phrase is a failure of kind ``no_phrases`` whose message holds
the raw answer (truncated).

Example::

    >>> parse_phrases('Sure! ["A red ball", "the table", "a cat"]', "A red ball on the table.", 4, 10)
    ['a red ball', 'the table']
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import Field

from syngen.models.roles import ChatLLM
from syngen.refs import ModelRef
from syngen.sample import Failure, Sample
from syngen.stages.base import Context, ModelStageConfig, Result, Stage, model_field

PLACEHOLDER = "{caption}"
_LIST_MARKER = re.compile(r"^(?:[-*•+]+|\(?\d+[.):])\s*")
_EDGE_CHARS = " \t\"'`[]{}()*.,;:!?"


class PhrasesConfig(ModelStageConfig):
    """Settings of the phrases stage."""

    model: ModelRef = model_field("tiny:llm", "Instruction-tuned causal LM with a chat template (backend causal-lm).")
    prompt: str = Field("prompts/phrases.txt", description=f"Prompt file; {PLACEHOLDER} is replaced by the caption.")
    max_new_tokens: int = Field(128, ge=1, le=4096, description="Longest LLM answer, in tokens.")
    max_phrases: int = Field(10, ge=1, description="Keep at most this many phrases per caption (first ones first).")
    max_words: int = Field(4, ge=1, description="Drop longer phrases (in words): short phrases ground better.")
    batch_size: int = Field(16, ge=1, description="Captions per LLM call; halved and retried on CUDA out-of-memory.")


class Phrases(Stage[PhrasesConfig, ChatLLM]):
    """Asks the LLM for the caption's short noun phrases and keeps those that occur in the caption."""

    name = "phrases"
    needs = ("caption",)
    adds = ("phrases",)
    Config = PhrasesConfig
    role = "llm"
    default_backend = "causal-lm"

    def __init__(self, config: PhrasesConfig, ctx: Context):
        super().__init__(config, ctx)
        path = ctx.resolve_path(config.prompt)
        self.template = path.read_text(encoding="utf-8")
        if PLACEHOLDER not in self.template:
            raise ValueError(f"prompt file {path} has no {PLACEHOLDER} placeholder")

    def process(self, samples: list[Sample], model: ChatLLM) -> list[Result]:
        cfg = self.config
        # str.replace, not str.format: prompt files hold JSON examples with braces
        prompts = [self.template.replace(PLACEHOLDER, sample["caption"]) for sample in samples]
        answers = model.chat(prompts, cfg.max_new_tokens)
        results: list[Result] = []
        for sample, answer in zip(samples, answers, strict=True):
            phrases = parse_phrases(answer, sample["caption"], cfg.max_words, cfg.max_phrases)
            if phrases:
                results.append({"phrases": phrases})
            else:
                message = f"no usable phrase in the LLM answer: {answer[:300]!r}"
                results.append(Failure(kind="no_phrases", message=message))
        return results


def parse_phrases(answer: str, caption: str, max_words: int, max_phrases: int) -> list[str]:
    """The phrases of an LLM ``answer`` that occur in ``caption``: lower-cased, trimmed, deduplicated, in order.

    Reads the first JSON array in the answer (its string items), or else one phrase per line (split also on
    commas and semicolons, with bullets, numbering, quotes and trailing punctuation stripped). Keeps phrases of
    at most ``max_words`` words that occur in the caption as whole words (case-insensitive), at most
    ``max_phrases`` of them. Never raises on junk: returns [] when nothing is usable.
    """
    items = _json_array(answer)
    if items is None:
        items = [piece for line in answer.splitlines() for piece in re.split(r"[,;]", line)]
    text = " ".join(caption.split())
    phrases = []
    for item in items:
        if not isinstance(item, str):
            continue
        phrase = " ".join(_LIST_MARKER.sub("", item.strip()).strip(_EDGE_CHARS).lower().split())
        if (
            phrase
            and phrase not in phrases
            and len(phrase.split()) <= max_words
            and re.search(rf"(?<!\w){re.escape(phrase)}(?!\w)", text, re.IGNORECASE)
        ):
            phrases.append(phrase)
    return phrases[:max_phrases]


def _json_array(text: str) -> list[Any] | None:
    """The first JSON array anywhere in ``text``, or None."""
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\[", text):
        try:
            value, _ = decoder.raw_decode(text, match.start())
        except ValueError:
            continue
        if isinstance(value, list):
            return value
    return None
