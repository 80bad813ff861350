"""Security: a Hub token never reaches a file, a log line or the card; a run writes only inside its output folder."""

from __future__ import annotations

import ast
import logging
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from syngen import stages as registry
from syngen.cli import app
from tests import fault_stages

TOKEN = "hf_PlantedTokenForLeakTest0123456789abcd"


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, cls in fault_stages.FAKES.items():
        monkeypatch.setitem(registry.STAGES, name, f"tests.fault_stages:{cls.__name__}")


def snapshot(root: Path) -> dict[Path, bytes]:
    return {p: p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_planted_token_appears_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fakes: None
) -> None:
    from huggingface_hub import HfApi

    def refuse(self, *args, **kwargs):  # an error whose text echoes the request's header, as some do
        raise ConnectionError(f"401 Client Error: Unauthorized (headers: authorization=Bearer {TOKEN})")

    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setattr(HfApi, "create_repo", refuse)
    recipe = fault_stages.write_recipe(tmp_path, 3, output={"push_to_hub": "me/leak-test", "license": "mit"})
    (tmp_path / "seeds" / "sub dir ünï").mkdir()
    (tmp_path / "seeds" / "seed 00.png").rename(tmp_path / "seeds" / "sub dir ünï" / "café 图.png")
    out, cwd = tmp_path / "out", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    before = snapshot(tmp_path)
    caplog.set_level(logging.DEBUG)
    runs = [
        CliRunner().invoke(app, ["run", str(recipe), "--out", str(out), "--no-progress"]),
        CliRunner().invoke(app, ["push", str(out), "--repo-id", "me/leak-test"]),
        CliRunner().invoke(app, ["export", str(out)]),
    ]
    assert [r.exit_code for r in runs] == [1, 1, 0], [r.output for r in runs]
    assert all("Could not push" in r.output for r in runs[:2])
    after = snapshot(tmp_path)
    written = [p for p in after if before.get(p) != after[p]]
    assert written and all(p.is_relative_to(out) for p in written), [p for p in written if not p.is_relative_to(out)]
    assert (out / "dataset" / "README.md") in written
    items = {r["provenance"]["source_item"] for r in pq.read_table(out / "dataset" / "data" / "grounding").to_pylist()}
    assert "sub dir ünï/café 图.png" in items  # non-ASCII and spaces end to end
    for path, data in after.items():
        assert TOKEN.encode() not in data, path
    for result in runs:
        assert TOKEN not in result.output
    assert TOKEN not in caplog.text


def _calls(name: str) -> list[tuple[Path, ast.Call]]:
    """Every call of ``name`` (a dotted name such as ``torch.load``) in syngen's source."""
    found = []
    for path in sorted((Path(__file__).resolve().parent.parent / "syngen").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == name:
                found.append((path, node))
    return found


def test_loading_is_safe_by_construction() -> None:
    """torch.load only with weights_only=True, YAML only through safe loaders, trust_remote_code never forced on."""
    for path, call in _calls("torch.load"):
        assert any(k.arg == "weights_only" and ast.unparse(k.value) == "True" for k in call.keywords), path
    for path, call in _calls("yaml.load"):
        loader = next((ast.unparse(k.value) for k in call.keywords if k.arg == "Loader"), "")
        assert loader in ("RecipeLoader", "yaml.SafeLoader"), path
    for name in ("yaml.unsafe_load", "yaml.full_load", "pickle.load", "pickle.loads"):
        assert not _calls(name), name
    for path in (Path(__file__).resolve().parent.parent / "syngen").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.keyword) and node.arg == "trust_remote_code":
                assert ast.unparse(node.value) != "True", path


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        pytest.param(None, False, id="unset-off"),
        pytest.param("YES", True, id="asked-for-on"),
    ],
)
def test_hub_kernels_load_only_when_asked(env: str | None, expected: bool) -> None:
    """transformers fetches compiled kernels from the Hub at load time by default; syngen turns that off unless the
    environment asks for it (a fresh process: the setting is read at import)."""
    script = (
        "from syngen.models.grounding_dino import GroundingDino\n"
        "from syngen.models.loading import build_tiny\n"
        "print(GroundingDino(build_tiny('grounder')).model.use_kernels)\n"
    )
    environ = {k: v for k, v in os.environ.items() if k != "USE_HUB_KERNELS"}
    environ |= {"HF_HUB_OFFLINE": "1"} | ({"USE_HUB_KERNELS": env} if env else {})
    out = subprocess.run([sys.executable, "-c", script], env=environ, capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == str(expected)
