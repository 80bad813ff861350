"""Chat LLM (``AutoModelForCausalLM``, e.g. Qwen/Qwen2.5-1.5B-Instruct) for phrase extraction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2Config,
    Qwen2ForCausalLM,
    Qwen2Tokenizer,
)

from syngen.models.base import Adapter, timed
from syngen.models.vocab import PUNCTUATION, WORDS, byte_bpe

# Qwen2.5's ChatML layout, without its default system message
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class CausalLM(Adapter):
    """Answers single-turn chat prompts with a causal LM: chat template, left padding, greedy decoding."""

    def __init__(self, path: str | Path, **kwargs: Any):
        super().__init__(path, **kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.path, padding_side="left", trust_remote_code=self.trust_remote_code
        )
        self.model = (
            AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype, trust_remote_code=self.trust_remote_code)
            .to(self.device)
            .eval()
        )

    @timed
    def chat(self, prompts: list[str], max_new_tokens: int) -> list[str]:
        """The model's answer to each prompt, sent as one user message."""
        inputs = self.tokenizer.apply_chat_template(
            [[{"role": "user", "content": prompt}] for prompt in prompts],
            add_generation_prompt=True,
            padding=True,
            return_tensors="pt",
            return_dict=True,
        ).to(self.device)
        out = self.model.generate(
            **inputs,
            max_new_tokens=max_new_tokens,
            do_sample=False,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        answers = self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
        return [answer.strip() for answer in answers]

    def chat_text(self, prompt: str) -> str:
        """The model's input text for ``prompt`` sent as one user message."""
        message = [{"role": "user", "content": prompt}]
        return str(self.tokenizer.apply_chat_template(message, add_generation_prompt=True, tokenize=False))

    def context_length(self) -> int:
        """Tokens the model reads at most (prompt and answer together)."""
        limit = getattr(self.model.config, "max_position_embeddings", None)
        return int(limit or min(self.tokenizer.model_max_length, 1 << 20))

    def fit(self, text: str, frame: str, max_new_tokens: int) -> str:
        """``text`` cut at a token boundary so that it, added to the prompt ``frame`` (the rest of the prompt) as a
        chat message, leaves room for ``max_new_tokens`` in the context; ``text`` itself when it fits."""
        frame_tokens = len(self.tokenizer.encode(self.chat_text(frame), add_special_tokens=False))
        room = max(0, self.context_length() - max_new_tokens - frame_tokens)
        ids = self.tokenizer.encode(text[: 32 * (room + 1)], add_special_tokens=False)  # a token is < 32 characters
        return text if len(ids) <= room and len(text) <= 32 * (room + 1) else str(self.tokenizer.decode(ids[:room]))

    @classmethod
    def build_tiny(cls, variant: str, path: Path) -> None:
        """A 2-layer, 32-wide Qwen2 with a byte-level BPE Qwen2Tokenizer over the shared vocabulary.

        Its weights are random but for a few arranged so that greedy answers read "word , word , ...", with the
        words varying: a phrase list the phrases stage can parse (a purely random twin repeats one long line).

        (transformers maps model type qwen2 to Qwen2Tokenizer whatever tokenizer_config.json says, so the twin's
        tokenizer is a real byte-level BPE of that class rather than a word-level one.)
        """
        vocab, merges = byte_bpe()
        tokenizer = Qwen2Tokenizer(
            vocab=vocab,
            merges=merges,
            unk_token=None,
            eos_token="<|im_end|>",
            pad_token="<|endoftext|>",
            additional_special_tokens=["<|im_start|>"],
        )
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
