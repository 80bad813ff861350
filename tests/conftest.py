"""Test-wide setup: never reach the Hub, cache tiny twins once per session, small image fixtures."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.helpers import draw_shapes

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tiny twins cached for the whole session (or in $SYNGEN_CACHE when set); HF caches in a temp folder."""
    os.environ.setdefault("SYNGEN_CACHE", str(tmp_path_factory.mktemp("syngen-cache")))
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf-home"))


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    """A folder of four small PNG/JPEG seed images, one in a subfolder."""
    root = tmp_path / "seeds"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.jpg", "c.png", "sub/d.png"]):
        draw_shapes(seed=i).save(root / name)
    return root
