"""Chat LLM (``AutoModelForCausalLM``, e.g. Qwen/Qwen2.5-1.5B-Instruct) for phrase extraction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase, Qwen2Config
from transformers import Qwen2ForCausalLM

from syngen.models.base import Adapter, timed
from syngen.models.vocab import word_tokenizer

# Qwen2.5's ChatML layout, without its default system message
CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


class CausalLM(Adapter):
    """Answers single-turn chat prompts with a causal LM: chat template, left padding, greedy decoding."""

    role = "llm"

    def __init__(self, path: str | Path, **kwargs: Any):
        super().__init__(path, **kwargs)
        self.tokenizer = AutoTokenizer.from_pretrained(
            self.path, padding_side="left", trust_remote_code=self.trust_remote_code
        )
        self.model = AutoModelForCausalLM.from_pretrained(
            self.path, dtype=self.dtype, trust_remote_code=self.trust_remote_code
        ).to(self.device).eval()

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
        answers = self.tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1]:], skip_special_tokens=True)
        return [answer.strip() for answer in answers]

    @classmethod
    def build_tiny(cls, variant: str, path: Path) -> None:
        """A 2-layer, 32-wide Qwen2 with a word-level ChatML tokenizer over the shared vocabulary."""
        tokenizer = word_tokenizer(
            unk="<unk>", pad="<|endoftext|>", eos="<|im_end|>", extra=("<|im_start|>",), chat_template=CHAT_TEMPLATE
        )
        config = Qwen2Config(
            vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=1024, tie_word_embeddings=False,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        )
        torch.manual_seed(0)
        model = Qwen2ForCausalLM(config).eval()
        words_only(model, tokenizer)
        model.save_pretrained(path)
        tokenizer.save_pretrained(path)


def words_only(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
    """Zero a random twin's output rows for special tokens, so its greedy answers are words (never empty).

    Random word logits are spread around 0; a zero logit then never wins among dozens of words.
    """
    with torch.no_grad():
        model.get_output_embeddings().weight[tokenizer.all_special_ids] = 0.0
