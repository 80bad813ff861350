"""docs/models.md stays current: its models table names every backend and every pipeline twin, and `syngen models`
lists them."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.models import BACKENDS
from syngen.models.twins import TINY

DOC = (Path(__file__).resolve().parents[2] / "docs" / "models.md").read_text()
TABLE = DOC.split("## Backends")[1].split("## Recipes")[0]


@pytest.mark.parametrize("backend", list(BACKENDS))
def test_models_table_has_a_row_per_backend_with_its_role(backend: str) -> None:
    [row] = [line for line in TABLE.splitlines() if line.split("|")[2:3] == [f" `{backend}` "]]
    assert row.split("|")[1].strip().startswith(BACKENDS[backend].role)
    assert row.count("|") == 7  # role, backend, checkpoint, licence, gated, twin


@pytest.mark.parametrize("twin", list(TINY))
def test_every_twin_is_documented_and_listed(twin: str) -> None:
    assert f"`tiny:{twin}`" in DOC
    output = CliRunner().invoke(app, ["models"], terminal_width=200).output
    assert f"tiny:{twin}" in output and (TINY[twin].backend or "(trainer only)") in output


@pytest.mark.parametrize("backend", ["sam2", "mm-grounding-dino", "qwen2.5-vl"])
def test_models_command_lists_the_new_backends_with_their_roles(backend: str) -> None:
    output = CliRunner().invoke(app, ["models"], terminal_width=200).output
    assert f"{backend} ({BACKENDS[backend].role})" in " ".join(output.split())
