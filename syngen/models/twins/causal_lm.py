"""Tiny twin of a chat LLM: a Qwen2 (``Qwen2ForCausalLM``) whose greedy answers read like phrase lists."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase, Qwen2Config, Qwen2ForCausalLM, Qwen2Tokenizer

from syngen.models.twins.vocab import PUNCTUATION, WORDS, byte_bpe

# Qwen2.5's ChatML layout, without its default system message
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_qwen2(path: Path) -> None:
    """A 2-layer, 32-wide Qwen2 with a byte-level BPE Qwen2Tokenizer over the shared vocabulary.

    Its weights are random but for a few arranged so that greedy answers read "word , word , ...", with the
    words varying: a phrase list the phrases stage can parse (a purely random twin repeats one long line).

    (transformers maps model type qwen2 to Qwen2Tokenizer whatever tokenizer_config.json says, so the twin's
    tokenizer is a real byte-level BPE of that class rather than a word-level one.)
    """
    tokenizer = qwen_tokenizer()
    tokenizer.chat_template = CHAT_TEMPLATE
    config = Qwen2Config(
        vocab_size=len(tokenizer),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=False,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).eval()
    words_only(model, tokenizer)
    _comma_separated(model, tokenizer)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)


def qwen_tokenizer(*special: str) -> Qwen2Tokenizer:
    """A byte-level BPE Qwen2Tokenizer over the shared vocabulary with Qwen's chat tokens (``<|im_start|>``,
    ``<|im_end|>`` ending an answer, ``<|endoftext|>`` padding) and the ``special`` tokens after them."""
    vocab, merges = byte_bpe()
    return Qwen2Tokenizer(
        vocab=vocab,
        merges=merges,
        unk_token=None,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=["<|im_start|>", *special],
    )


def words_only(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Let a random twin's greedy answers be space-separated vocabulary words (never empty, never byte junk).

    Zeroes the output rows of every token other than " word" for WORDS and PUNCTUATION: random logits of the
    allowed tokens spread around 0, so a zero logit never wins among dozens of them.
    """
    allowed = [
        ids[0]
        for word in WORDS + PUNCTUATION
        if len(ids := tokenizer.encode(" " + word, add_special_tokens=False)) == 1
    ]
    weight = model.get_output_embeddings().weight
    muted = torch.ones(weight.shape[0], dtype=torch.bool)
    muted[allowed] = False
    with torch.no_grad():
        weight[muted] = 0.0


def _comma_separated(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Make a :func:`words_only` twin answer "w1 , w2 , w3 ...".

    The embeddings' first dimension marks words (+1) and the comma (-1), dwarfing the random rest (std 0.02), and
    the comma's output row reads only that dimension: the comma wins after any word and loses after itself, where
    the random word rows pick the word. ``no_repeat_ngram_size=2`` then moves on to a new word after each comma.
    """
    comma = tokenizer.encode(" ,", add_special_tokens=False)[0]
    words = [ids[0] for word in WORDS if len(ids := tokenizer.encode(" " + word, add_special_tokens=False)) == 1]
    embed, out = model.get_input_embeddings().weight, model.get_output_embeddings().weight
    with torch.no_grad():
        embed[:, 0] = 0.0
        embed[words, 0] = 1.0
        embed[comma, 0] = -1.0
        out[:, 0] = 0.0
        out[comma] = 0.0
        out[comma, 0] = 1.0
    model.generation_config.no_repeat_ngram_size = 2
