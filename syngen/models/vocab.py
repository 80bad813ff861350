"""The small English vocabulary shared by the tiny twins' tokenizers.

Built locally (no download). Captions and LLM answers of random twins are then sequences of these words, so
text-processing code runs on word-like input. BERT-style vocabularies keep bert-base-uncased's ids for the
tokens GroundingDINO hard-codes ([CLS] 101, [SEP] 102, "." 1012, "?" 1029).
"""

from __future__ import annotations

WORDS: tuple[str, ...] = (
    "a", "an", "the", "of", "on", "in", "with", "and", "at", "to", "is", "are", "near", "next", "left", "right",
    "top", "bottom", "front", "behind", "small", "large", "big", "little", "red", "green", "blue", "yellow",
    "white", "black", "orange", "purple", "gray", "circle", "square", "triangle", "ring", "ball", "box", "cat",
    "dog", "person", "man", "woman", "child", "car", "tree", "house", "table", "chair", "cup", "plate", "road",
    "sky", "grass", "water", "wall", "floor", "window", "door", "shape", "background", "picture", "photo",
    "image", "there", "two", "three", "one", "sitting", "standing", "holding", "wearing", "shirt", "hat",
)
PUNCTUATION: tuple[str, ...] = (".", ",", "?", "!", "\"", "[", "]", ":", "'", "-")

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
