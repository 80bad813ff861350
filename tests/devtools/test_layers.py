"""The import-layer check: syngen has no import circle, and a planted one is found and named."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from syngen.devtools.layers import circles, import_graph, layers, main

SYNGEN = Path(__file__).resolve().parents[2] / "syngen"


def test_syngen_has_no_import_circle() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "syngen.devtools.layers"], capture_output=True, text=True, cwd=SYNGEN.parent
    )
    assert result.returncode == 0, result.stderr
    assert "circle" not in result.stderr and "syngen.cli" in result.stdout.splitlines()[-1]  # the CLI on top


def test_evaluation_sits_above_training_above_metrics() -> None:
    rank = {node: number for number, layer in enumerate(layers(import_graph(SYNGEN))) for node in layer}
    assert rank["syngen.metrics"] < rank["syngen.train"] < rank["syngen.eval"]
    assert rank["syngen.shard"] < rank["syngen.runner"] < rank["syngen.executors"]
    assert rank["syngen.hub"] < rank["syngen.export"] < rank["syngen.push"]


def plant(root: Path, files: dict[str, str]) -> Path:
    """A package ``pkg`` under ``root`` with the given modules (path -> source); returns its folder."""
    for name, source in {"__init__.py": "", **files}.items():
        (root / "pkg" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "pkg" / name).write_text(source)
    return root / "pkg"


@pytest.mark.parametrize(
    "spelling",
    [
        "from pkg.b import thing",
        "from pkg import b",
        "import pkg.b",
        "import pkg.b.inner",
        "from . import b",
        "from .b import thing",
        "def later():\n    from pkg.b import thing",
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import thing",
    ],
    ids=["from-module", "from-package", "import", "import-submodule", "relative-package", "relative-module",
         "inside-a-function", "type-checking"],
)  # fmt: skip
def test_a_planted_circle_is_found_whatever_the_spelling(tmp_path: Path, spelling: str) -> None:
    folder = plant(tmp_path, {"a.py": spelling, "b/__init__.py": "from pkg.a import x", "b/inner.py": "", "c.py": ""})
    assert circles(import_graph(folder)) == [["pkg.a", "pkg.b", "pkg.a"]]
    assert layers(import_graph(folder)) == [["pkg", "pkg.c"]]  # the circle's nodes are left out


def test_the_command_names_the_circle_and_its_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = plant(tmp_path, {"a.py": "import pkg.b", "b.py": "\nimport pkg.c", "c.py": "from pkg import a"})
    assert main([str(folder)]) == 1
    err = capsys.readouterr().err
    assert "circle: pkg.a -> pkg.b -> pkg.c -> pkg.a" in err
    assert "pkg.b -> pkg.c: pkg/b.py:2" in err


def test_no_circle_gives_layers_lowest_first(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = plant(tmp_path, {"a.py": "import pkg.b\nimport pkg.c", "b.py": "import pkg.c", "c.py": ""})
    assert main([str(folder)]) == 0
    assert capsys.readouterr().out.split("\n")[:3] == ["  0  pkg  pkg.c", "  1  pkg.b", "  2  pkg.a"]


def test_depth_zero_keeps_modules_of_one_package_apart(tmp_path: Path) -> None:
    folder = plant(
        tmp_path, {"sub/__init__.py": "", "sub/x.py": "from pkg.sub import y", "sub/y.py": "import pkg.sub.x"}
    )
    assert circles(import_graph(folder)) == []  # one node at depth 1
    assert circles(import_graph(folder, depth=0)) == [["pkg.sub.x", "pkg.sub.y", "pkg.sub.x"]]


def test_benchmarks_import_no_test_code() -> None:
    imports = []
    for path in sorted((SYNGEN.parent / "benchmarks").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else [a.name for a in node.names]
                imports += [f"{path.name}: {name}" for name in names if name.split(".")[0] == "tests"]
    assert imports == []
