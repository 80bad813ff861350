"""Files shipped inside the package: ``prompts/`` and ``recipes/quickstart.yaml`` with its seed images
(``recipes/seeds/quickstart/``).

They are found with :mod:`importlib.resources`, so an installed syngen (a wheel, ``pip install .``) finds them
from any folder. The repository's top-level ``prompts/`` and ``recipes/quickstart.yaml`` are links to them.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path


def assets_dir() -> Path:
    """The folder holding the bundled files (a real folder: syngen is installed unzipped)."""
    root = resources.files(__name__)
    if not isinstance(root, Path):
        raise RuntimeError(f"syngen's bundled files are not in a folder ({root}): install syngen unzipped")
    return root


def bundled_dirs() -> tuple[Path, Path]:
    """Where a recipe's relative paths are looked up among the bundled files: the top (``prompts/``) and the bundled
    recipes' folder (their ``seeds/``), so a copy of a bundled recipe anywhere finds what the original finds."""
    return assets_dir(), assets_dir() / "recipes"


def quickstart_recipe() -> Path:
    """The bundled offline quickstart recipe (tiny twins, six drawn seed images)."""
    return assets_dir() / "recipes" / "quickstart.yaml"
