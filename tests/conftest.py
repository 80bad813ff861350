"""Test-wide setup: never reach the Hub, cache tiny twins once per session, small image fixtures."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.helpers import draw_shapes

os.environ["HF_HUB_OFFLINE"] = "1"
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session", autouse=True)
def _isolated_caches(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tiny twins cached for the whole session (or in $SYNGEN_CACHE when set); HF caches in a temp folder."""
    os.environ.setdefault("SYNGEN_CACHE", str(tmp_path_factory.mktemp("syngen-cache")))
    os.environ["HF_HOME"] = str(tmp_path_factory.mktemp("hf-home"))


@pytest.fixture(autouse=True)
def _threads_as_they_were() -> Iterator[None]:
    """A run sizes torch's threads to its CPU share (syngen.cpus): each test starts from the count the session
    started with."""
    torch_threads = torch.get_num_threads()
    yield
    torch.set_num_threads(torch_threads)


@pytest.fixture
def one_thread() -> Iterator[None]:
    """One torch thread for tiny-model training and inference: on a shared 2-core machine more only contend."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    """A folder of four small PNG/JPEG seed images, one in a subfolder."""
    root = tmp_path / "seeds"
    (root / "sub").mkdir(parents=True)
    for i, name in enumerate(["a.png", "b.jpg", "c.png", "sub/d.png"]):
        draw_shapes(seed=i).save(root / name)
    return root


@pytest.fixture(scope="session")
def tiny_vaes(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folders of two VAEs shaped like the SD twin's: ``own`` (the twin's, saved on its own) and ``other`` (another
    seed, with ``force_upcast`` off as in madebyollin/sdxl-vae-fp16-fix)."""
    from diffusers import AutoencoderKL

    from syngen.models.loading import build_tiny

    root = tmp_path_factory.mktemp("vaes")
    own = AutoencoderKL.from_pretrained(build_tiny("sd") / "vae")
    own.save_pretrained(root / "own")
    with torch.random.fork_rng():
        torch.manual_seed(1)
        AutoencoderKL.from_config({**own.config, "force_upcast": False}).save_pretrained(root / "other")
    return {"own": root / "own", "other": root / "other"}
