"""The chat LLM on its tiny Qwen2 twin: classes, tokenizer, chat template, left padding, greedy answers."""

from __future__ import annotations

import pytest

from syngen.models.causal_lm import CausalLM
from syngen.models.loading import build_tiny
from syngen.models.twins.vocab import PUNCTUATION, WORDS

PROMPTS = ["List the noun phrases of: a red ball on the table next to a small dog", "hi"]


@pytest.fixture(scope="module")
def llm() -> CausalLM:
    return CausalLM(build_tiny("llm"))


def test_twin_uses_the_real_checkpoint_classes(llm: CausalLM) -> None:
    # Qwen/Qwen2.5-1.5B-Instruct
    assert type(llm.model).__name__ == "Qwen2ForCausalLM"
    assert type(llm.tokenizer).__name__ == "Qwen2Tokenizer"


@pytest.mark.parametrize(
    ("text", "tokens"),
    [("red", ["red"]), (" red ball", ["Ġred", "Ġball"]), ("a cat.", ["a", "Ġcat", "."]), ("xyz", ["x", "y", "z"])],
    ids=["word", "spaced-words", "punctuation", "unknown-falls-back-to-bytes"],
)
def test_tokenizer_is_byte_level_bpe_over_the_vocabulary(llm: CausalLM, text: str, tokens: list[str]) -> None:
    ids = llm.tokenizer.encode(text, add_special_tokens=False)
    assert llm.tokenizer.convert_ids_to_tokens(ids) == tokens
    assert llm.tokenizer.decode(ids) == text


def test_chat_template_wraps_a_user_message(llm: CausalLM) -> None:
    message = [{"role": "user", "content": "hi"}]
    text = llm.tokenizer.apply_chat_template(message, add_generation_prompt=True, tokenize=False)
    assert text == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


def test_chat_batches_with_left_padding_and_greedy_answers(llm: CausalLM) -> None:
    answers = llm.chat(PROMPTS, max_new_tokens=12)
    assert len(answers) == 2
    for answer in answers:
        assert answer and set(answer.split()) <= set(WORDS + PUNCTUATION)
        assert "," in answer  # the twin answers "word , word , ...": a list the phrases stage can parse
    assert llm.chat(PROMPTS[1:], max_new_tokens=12) == answers[1:]  # the short prompt was padded in the batch
    assert llm.chat(PROMPTS, max_new_tokens=12) == answers
    batch = llm.tokenizer.apply_chat_template(
        [[{"role": "user", "content": p}] for p in PROMPTS], add_generation_prompt=True, padding=True, return_dict=True
    )
    assert batch["input_ids"][1][0] == llm.tokenizer.pad_token_id and batch["attention_mask"][1][0] == 0
