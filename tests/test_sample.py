"""The sample helpers: stable ids and the one per-item seed derivation."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from syngen.sample import item_seed, make_id
from syngen.stages.base import Context
from syngen.stages.negatives import attempt_seed
from syngen.stages.synthesize import Synthesize, SynthesizeConfig


def _sha1_hex16(*parts: Any) -> str:
    """make_id written out independently: the first 16 hex digits of the SHA-1 of the parts' sorted JSON."""
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


@pytest.mark.parametrize(
    ("parts", "bits", "old_derivation"),
    [
        # synthesize: int(make_id(seed, parent_id, index), 16) % 2**31
        pytest.param((0, "3f2a9c0d11e4b7aa", 0), 31, lambda *p: int(_sha1_hex16(*p), 16) % 2**31, id="synthesize"),
        pytest.param((7, "parent", 5), 31, lambda *p: int(_sha1_hex16(*p), 16) % 2**31, id="synthesize-seed-7"),
        # negatives: int(make_id(seed, sample_id, region, kind, slot, attempt)[:15], 16)
        pytest.param(
            (0, "abc", 2, "boundary", 1, 9), 60, lambda *p: int(_sha1_hex16(*p)[:15], 16), id="negatives-boundary"
        ),
        pytest.param((3, "abc", 0, "semantic", 0, 0), 60, lambda *p: int(_sha1_hex16(*p)[:15], 16), id="negatives"),
        # views: int(make_id(seed, sample_id, region), 16)
        pytest.param((0, "abc", 4), 64, lambda *p: int(_sha1_hex16(*p), 16), id="views"),
    ],
)
def test_item_seed_reproduces_the_stage_derivations(parts: tuple, bits: int, old_derivation: Any) -> None:
    assert item_seed(*parts, bits=bits) == old_derivation(*parts)
    assert 0 <= item_seed(*parts, bits=bits) < 2**bits


ID_PARTS = {
    "ints-and-text": (0, "abc", 2, "boundary", 1, 9),
    "nested-dict-keys-unsorted": ({"b": 1, "a": [1.5, None, True]}, "x"),
    "non-ascii-text": ("caf\u00e9 \u732b", "\ud83d\ude00"),
    "floats": (0.1, 1e300, -0.0, 2.5),
    "not-json-by-default-str": (Path("seeds/a.png"), ("t", b"bytes")),
    "no-parts": (),
}


@pytest.mark.parametrize("parts", ID_PARTS.values(), ids=ID_PARTS.keys())
def test_make_id_is_the_sha1_of_json_dumps(parts: tuple) -> None:
    assert make_id(*parts) == _sha1_hex16(*parts)


def test_item_seed_defaults_to_64_bits_and_checks_its_width() -> None:
    assert item_seed("a", 1) == int(make_id("a", 1), 16)
    assert item_seed("a", 1) != item_seed("a", 2)
    with pytest.raises(ValueError, match="bits"):
        item_seed("a", bits=65)


def test_stage_seeds_use_the_helper() -> None:
    synth = Synthesize(SynthesizeConfig(seed=4), Context(recipe_dir=Path(".")))
    assert synth.image_seed("p", 2) == int(_sha1_hex16(4, "p", 2), 16) % 2**31
    assert attempt_seed(1, "s", 0, "boundary", 1, 3) == int(_sha1_hex16(1, "s", 0, "boundary", 1, 3)[:15], 16)
