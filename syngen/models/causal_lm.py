"""Chat LLM (``AutoModelForCausalLM``, e.g. Qwen/Qwen2.5-1.5B-Instruct) for phrase extraction."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
)

from syngen.models.base import Adapter, timed


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
