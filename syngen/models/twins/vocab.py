"""The small English vocabulary shared by the tiny twins' tokenizers.

Built locally (no download). Captions and LLM answers of random twins are then sequences of these words, so
text-processing code runs on word-like input. BERT-style vocabularies keep bert-base-uncased's ids for the
tokens GroundingDINO hard-codes ([CLS] 101, [SEP] 102, "." 1012, "?" 1029).
"""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
from transformers import PreTrainedTokenizerFast

WORDS: tuple[str, ...] = (
    "a",
    "an",
    "the",
    "of",
    "on",
    "in",
    "with",
    "and",
    "at",
    "to",
    "is",
    "are",
    "near",
    "next",
    "left",
    "right",
    "top",
    "bottom",
    "front",
    "behind",
    "small",
    "large",
    "big",
    "little",
    "red",
    "green",
    "blue",
    "yellow",
    "white",
    "black",
    "orange",
    "purple",
    "gray",
    "circle",
    "square",
    "triangle",
    "ring",
    "ball",
    "box",
    "cat",
    "dog",
    "person",
    "man",
    "woman",
    "child",
    "car",
    "tree",
    "house",
    "table",
    "chair",
    "cup",
    "plate",
    "road",
    "sky",
    "grass",
    "water",
    "wall",
    "floor",
    "window",
    "door",
    "shape",
    "background",
    "picture",
    "photo",
    "image",
    "there",
    "two",
    "three",
    "one",
    "sitting",
    "standing",
    "holding",
    "wearing",
    "shirt",
    "hat",
)
PUNCTUATION: tuple[str, ...] = (".", ",", "?", "!", '"', "[", "]", ":", "'", "-")

BERT_SPECIAL = {"[PAD]": 0, "[UNK]": 100, "[CLS]": 101, "[SEP]": 102, "[MASK]": 103, ".": 1012, "?": 1029}


def bert_vocab() -> dict[str, int]:
    """A WordPiece vocabulary (token -> id) with bert-base-uncased's special and punctuation ids; 1100 entries."""
    vocab = dict(BERT_SPECIAL)
    free = (i for i in range(1100) if i not in vocab.values())
    for token in WORDS + tuple(p for p in PUNCTUATION if p not in vocab):
        vocab[token] = next(free)
    for i in free:
        vocab[f"[unused{i}]"] = i
    return dict(sorted(vocab.items(), key=lambda kv: kv[1]))


def clip_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A CLIP-style BPE vocabulary and merges: every word and punctuation mark is one ``</w>``-suffixed token.

    Other text falls back to characters. Pass to ``CLIPTokenizer(vocab=vocab, merges=merges)``.
    """
    words = [[*w[:-1], w[-1] + "</w>"] for w in [*_CHARS, *WORDS, *PUNCTUATION]]
    return _learn_bpe(words, specials=("<|startoftext|>", "<|endoftext|>"), alphabet=_CHARS)


def byte_bpe() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A byte-level BPE vocabulary and merges (GPT-2 / Qwen2 style): every word, with and without its leading
    space (``Ġ``), is one token; any other text falls back to the 256 byte symbols.

    Pass to e.g. ``Qwen2Tokenizer(vocab=vocab, merges=merges)``; special tokens are added by the tokenizer.
    """
    words = [list(prefix + w) for w in WORDS + PUNCTUATION for prefix in ("", "Ġ")]
    return _learn_bpe(words, specials=(), alphabet=pre_tokenizers.ByteLevel.alphabet())


_CHARS = list("abcdefghijklmnopqrstuvwxyz0123456789")


def _learn_bpe(
    words: list[list[str]], specials: tuple[str, ...], alphabet: list[str]
) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """Plain BPE training on ``words`` (lists of symbols) until each is one token; ties broken alphabetically
    so the result is deterministic (the ``tokenizers`` trainer's tie order is not)."""
    vocab = {token: i for i, token in enumerate(specials)}
    for token in sorted({t for w in words for t in w} | set(alphabet)):
        vocab[token] = len(vocab)
    merges: list[tuple[str, str]] = []
    while True:
        pairs = Counter(pair for w in words for pair in pairwise(w))
        if not pairs:
            return vocab, merges
        best = min(pairs, key=lambda pair: (-pairs[pair], pair))
        merges.append(best)
        vocab[best[0] + best[1]] = len(vocab)
        words = [_merge(w, best) for w in words]


def _merge(word: list[str], pair: tuple[str, str]) -> list[str]:
    out: list[str] = []
    for token in word:
        if out and (out[-1], token) == pair:
            out[-1] += token
        else:
            out.append(token)
    return out


def word_tokenizer(
    *, unk: str, pad: str, eos: str, bos: str | None = None, extra: tuple[str, ...] = (), chat_template: str
) -> PreTrainedTokenizerFast:
    """A word-level fast tokenizer over WORDS and PUNCTUATION (lower-cased; unknown words become ``unk``).

    Special tokens take the first ids. With ``bos``, encoding prepends it (as Llama's tokenizer does). Decoding
    joins tokens with spaces, so a random model's answer reads as space-separated words.
    """
    specials = list(dict.fromkeys([unk, pad, eos, *([bos] if bos else []), *extra]))
    vocab = {token: i for i, token in enumerate(specials + list(WORDS + PUNCTUATION))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token=unk))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )
    if bos:
        backend.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B", special_tokens=[(bos, vocab[bos])]
        )
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        unk_token=unk,
        pad_token=pad,
        eos_token=eos,
        bos_token=bos,
        additional_special_tokens=list(extra),
        chat_template=chat_template,
    )
