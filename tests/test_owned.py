"""Which folders syngen owns: the marker, folders an older syngen made, refusals, and the atomic replacement."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from syngen.owned import MARKER, ForeignFolder, claim, foreign_entries, is_owned, replacing


def tree(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (relative path -> content)."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def plant(folder: Path, *files: str) -> Path:
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text("mine")
    return folder


@pytest.mark.parametrize(
    "files",
    [
        pytest.param(None, id="missing"),
        pytest.param([], id="empty"),
        pytest.param([MARKER, "notes.txt"], id="marked"),
        pytest.param(["run.json", "notes.txt"], id="older-syngen-run-json"),
        pytest.param(["stages/caption/fingerprint.json"], id="older-syngen-shards-only"),
    ],
)
def test_claim_marks_a_folder_syngen_may_use(tmp_path: Path, files: list[str] | None) -> None:
    out = tmp_path / "out"
    if files is not None:
        plant(out, *files) if files else out.mkdir()
    before = tree(out) if out.exists() else {}
    claim(out)
    assert is_owned(out)
    assert tree(out) == before | {MARKER: before.get(MARKER, b"")}  # the marker added, nothing else touched


@pytest.mark.parametrize(
    "files, named",
    [
        pytest.param(["thesis.txt"], "(thesis.txt)", id="a-file"),
        pytest.param(["dataset/thesis.txt", "stages/notes.txt"], "(dataset/, stages/)", id="folders"),
        pytest.param(["stages/caption/notes.txt"], "(stages/)", id="stage-folder-without-fingerprint"),
        pytest.param([f"f{i}" for i in range(7)], "(f0, f1, f2, f3, f4 and 2 more)", id="many"),
    ],
)
def test_claim_refuses_a_foreign_folder_and_leaves_it_alone(tmp_path: Path, files: list[str], named: str) -> None:
    out = plant(tmp_path / "out", *files)
    before = tree(out)
    with pytest.raises(ForeignFolder) as refused:
        claim(out)
    message = str(refused.value)
    assert message.startswith(f"{out} holds files syngen did not write {named} and no .syngen marker"), message
    assert "\n" not in message and "--out" in message
    assert tree(out) == before and not is_owned(out)


def build(final: Path, fail: bool = False) -> None:
    with replacing(final, older=("README.md", "data")) as building:
        plant(building, "README.md", "data/x.parquet")
        if fail:
            raise RuntimeError("killed")


@pytest.mark.parametrize(
    "setup",
    [
        pytest.param(lambda d: None, id="missing"),
        pytest.param(lambda d: d.mkdir(), id="empty"),
        pytest.param(lambda d: build(d), id="syngen-made"),
        pytest.param(lambda d: plant(d, "README.md", "data/old.parquet"), id="older-syngen"),
    ],
)
def test_replacing_swaps_in_a_marked_folder(tmp_path: Path, setup: Callable[[Path], object]) -> None:
    final = tmp_path / "dataset"
    setup(final)
    build(final)
    assert tree(final) == {MARKER: b"", "README.md": b"mine", "data/x.parquet": b"mine"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]  # no .dataset.tmp / .dataset.old left


@pytest.mark.parametrize(
    "setup, named",
    [
        pytest.param(lambda d: plant(d, "thesis.txt"), "(thesis.txt)", id="foreign-file-inside"),
        pytest.param(lambda d: plant(d, "README.md", "notes/a.txt"), "(notes/)", id="older-names-and-a-foreign-one"),
        pytest.param(lambda d: d.write_text("a file"), "(dataset)", id="a-file-in-its-place"),
    ],
)
def test_replacing_refuses_a_folder_syngen_did_not_make(tmp_path: Path, setup: Callable, named: str) -> None:
    final = tmp_path / "dataset"
    setup(final)
    before = tree(tmp_path)
    with pytest.raises(ForeignFolder, match=named.replace("(", r"\(").replace(")", r"\)")):
        build(final)
    assert tree(tmp_path) == before


def test_a_failed_build_keeps_the_old_folder_and_leaves_no_temporary(tmp_path: Path) -> None:
    final = tmp_path / "dataset"
    build(final)
    (final / "README.md").write_text("old")
    with pytest.raises(RuntimeError, match="killed"):
        build(final, fail=True)
    assert (final / "README.md").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dataset"]


def test_foreign_entries_name_folders_with_a_slash_and_skip_the_marker(tmp_path: Path) -> None:
    plant(tmp_path, MARKER, "b.txt", "a/x", "README.md")
    assert foreign_entries(tmp_path) == ["README.md", "a/", "b.txt"]
    assert foreign_entries(tmp_path, ["README.md"]) == ["a/", "b.txt"]
    assert foreign_entries(tmp_path / "missing") == []
