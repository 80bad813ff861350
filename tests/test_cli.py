"""The command line on bad paths, locks and unfinished runs: one paragraph, a non-zero exit, never a traceback."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
import yaml
from filelock import FileLock
from typer.testing import CliRunner

from syngen import stages as registry
from syngen.cli import app, os_error_message
from tests import fault_stages


@pytest.fixture(autouse=True)
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    for name, cls in fault_stages.FAKES.items():
        monkeypatch.setitem(registry.STAGES, name, f"tests.fault_stages:{cls.__name__}")


def syngen(*args: str | Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    assert "Traceback" not in result.output and result.exception is None or isinstance(result.exception, SystemExit)
    return result.exit_code, " ".join(result.output.split())


def with_source(tmp_path: Path, **source: str) -> Path:
    path = fault_stages.write_recipe(tmp_path, 2)
    data = yaml.safe_load(path.read_text())
    data["source"] |= source
    if source.get("kind") == "captions":
        del data["stages"]["caption"]
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize(
    "setup, code, expected",
    [
        pytest.param(
            lambda t: (t / "out").write_text("a file"), 1, "out: it exists and is not a folder", id="output-is-a-file"
        ),
        pytest.param(
            lambda t: with_source(t, kind="captions", path="seeds"), 2, "kind: captions reads one", id="captions-folder"
        ),
        pytest.param(
            lambda t: with_source(t, kind="dataset", path="seeds"), 2, "neither a dataset saved", id="dataset-images"
        ),
        pytest.param(
            lambda t: (t / "recipe.yaml").write_bytes(b"name: caf\xe9\n"), 2, "not UTF-8 text", id="recipe-not-utf-8"
        ),
        pytest.param(
            lambda t: (t / "recipe.yaml").unlink() or (t / "recipe.yaml").mkdir(),
            2,
            "no such recipe file",
            id="recipe-is-a-folder",
        ),
    ],
)
def test_bad_paths_end_with_one_paragraph(tmp_path: Path, setup, code: int, expected: str) -> None:
    fault_stages.write_recipe(tmp_path, 2)
    setup(tmp_path)
    exit_code, output = syngen("run", tmp_path / "recipe.yaml", "--out", tmp_path / "out", "--no-progress")
    assert exit_code == code and expected in output, output
    assert output.startswith("error:") and str(tmp_path) in output


def test_skipped_files_are_reported(tmp_path: Path) -> None:
    recipe = fault_stages.write_recipe(tmp_path, 1)
    (tmp_path / "seeds" / "notes.txt").write_text("not an image")
    exit_code, output = syngen("run", recipe, "--out", tmp_path / "out", "--no-progress")
    assert exit_code == 0 and "skipped 1 files that are not seed images (notes.txt: not an image" in output


def test_no_seed_item_exits_1_listing_what_was_skipped(tmp_path: Path) -> None:
    recipe = fault_stages.write_recipe(tmp_path, 0)
    (tmp_path / "seeds" / "notes.txt").write_text("not an image")
    exit_code, output = syngen("run", recipe, "--out", tmp_path / "out", "--no-progress")
    assert exit_code == 1 and "no seed items (skipped 1 files: notes.txt: not an image" in output, output
    assert json.loads((tmp_path / "out" / "run.json").read_text())["skipped"] == {
        "notes.txt": "not an image (Pillow cannot identify it)"
    }


def test_export_shares_the_run_lock(tmp_path: Path) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 2), tmp_path / "out"
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0
    with FileLock(str(out / ".lock")):
        exit_code, output = syngen("export", out)
    assert exit_code == 1 and "another syngen run is writing to" in output


def test_export_of_an_unfinished_run_refuses_unless_partial(tmp_path: Path) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 4, wave_size=2), tmp_path / "out"
    assert syngen("run", recipe, "--out", out, "--no-progress", "--limit", "4")[0] == 0
    before = (out / "dataset" / "README.md").read_text()
    (tmp_path / "seeds" / "seed 09.png").write_bytes((tmp_path / "seeds" / "seed 00.png").read_bytes())
    exit_code, output = syngen("export", out, "--recipe", recipe)  # seed 09 is new: not computed yet
    assert exit_code == 1, output
    assert "the run is unfinished: 8 samples are complete and 1 inputs of the source stage" in output
    assert (out / "dataset" / "README.md").read_text() == before
    exit_code, output = syngen("export", out, "--recipe", recipe, "--partial")
    assert exit_code == 0 and "(partial)" in output
    assert "**Partial export:**" in (out / "dataset" / "README.md").read_text()
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0  # finishing rewrites a complete card
    assert "Partial export" not in (out / "dataset" / "README.md").read_text()


def test_a_damaged_fingerprint_redoes_only_that_stage_without_a_traceback(tmp_path: Path) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 2), tmp_path / "out"
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0
    (out / "stages" / "segment" / "fingerprint.json").write_text('{"fingerprint": ')
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert [name for name, s in stages.items() if s["computed"]] == ["segment"]  # the later stages still match


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.mark.parametrize(
    "args",
    [
        pytest.param(["run", "{recipe}", "--out", "{out}"], id="run"),
        pytest.param(["run", "{recipe}", "--out", "{out}", "--fresh"], id="run-fresh"),
        pytest.param(["export", "{out}", "--recipe", "{recipe}"], id="export"),
    ],
)
def test_a_folder_syngen_never_wrote_is_never_modified(tmp_path: Path, args: list[str]) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 2), tmp_path / "out"
    for name in ("dataset/thesis.txt", "stages/notes.txt"):
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        (out / name).write_text("mine")
    before = tree(out)
    exit_code, output = syngen(*(a.format(recipe=recipe, out=out) for a in args))
    assert exit_code == 2, output
    assert f"error: {out} holds files syngen did not write (dataset/, stages/) and no .syngen marker" in output
    assert tree(out) == before and sorted(p.name for p in out.iterdir()) == ["dataset", "stages"]


def test_fresh_deletes_only_what_syngen_wrote(tmp_path: Path) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 2), tmp_path / "out"
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0
    assert (out / ".syngen").is_file() and (out / "dataset" / ".syngen").is_file()
    foreign = ["notes.txt", "stages/notes.txt", "stages/caption/notes.txt"]
    for name in foreign:
        (out / name).write_text("mine")
    exit_code, output = syngen("run", recipe, "--out", out, "--no-progress", "--fresh")
    assert exit_code == 0, output
    assert all((out / name).read_text() == "mine" for name in foreign)
    assert (out / ".syngen").is_file()
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert all(s["computed"] == s["items_in"] > 0 for s in stages.values())  # every result was dropped and redone


def test_a_dataset_folder_syngen_did_not_write_is_refused_before_the_run(tmp_path: Path) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 2), tmp_path / "out"
    (out / "dataset").mkdir(parents=True)
    (out / ".syngen").touch()  # the output folder is syngen's, but not the dataset folder in it
    (out / "dataset" / "thesis.txt").write_text("mine")
    exit_code, output = syngen("run", recipe, "--out", out, "--no-progress")
    assert exit_code == 2 and f"{out / 'dataset'} holds files syngen did not write (thesis.txt)" in output, output
    assert tree(out / "dataset") == {"thesis.txt": b"mine"} and not (out / "stages").exists()


def test_a_folder_an_older_syngen_made_is_adopted(tmp_path: Path) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 2), tmp_path / "out"
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0
    for marker in (out / ".syngen", out / "dataset" / ".syngen"):
        marker.unlink()  # as an older syngen left it
    exit_code, output = syngen("run", recipe, "--out", out, "--no-progress", "--limit", "1")
    assert exit_code == 0, output
    assert (out / ".syngen").is_file() and (out / "dataset" / ".syngen").is_file()


def _stat_denied(monkeypatch: pytest.MonkeyPatch, path: Path) -> None:
    """``os.stat`` of ``path`` raises PermissionError, as for a user who may not look into its folder (tests run as
    root, who may)."""
    real = os.stat

    def stat(target: Any, *args: Any, **kwargs: Any) -> os.stat_result:
        if os.fspath(target) == str(path):
            raise PermissionError(errno.EACCES, "Permission denied", str(target))
        return real(target, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)


LONG = "/tmp/" + "n" * 5000


@pytest.mark.parametrize(
    "make_error, expected",
    [
        pytest.param(
            lambda t, m: OSError(errno.ENAMETOOLONG, "File name too long", LONG),
            "/tmp/nnn",
            id="path-too-long",
        ),
        pytest.param(
            lambda t, m: OSError(errno.ENOSPC, "No space left on device", LONG),
            "nnn (5005 characters): the disk is full",
            id="long-path-other-error",
        ),
        pytest.param(
            lambda t, m: _stat_denied(m, t / "out") or FileExistsError(errno.EEXIST, "File exists", str(t / "out")),
            "out: it exists (FileExistsError",
            id="permission-denied",
        ),
        pytest.param(
            lambda t, m: (t / "out").symlink_to(t / "gone") or FileExistsError(errno.EEXIST, "exists", str(t / "out")),
            "out: it exists (FileExistsError",
            id="broken-symlink",
        ),
        pytest.param(
            lambda t, m: (t / "out").write_text("x") and FileExistsError(errno.EEXIST, "exists", str(t / "out")),
            "out: it exists and is not a folder",
            id="path-is-a-file",
        ),
        pytest.param(
            lambda t, m: OSError(errno.EACCES, "Permission denied", os.fsdecode(b"/o/caf\xe9\nx")),
            "/o/caf\\xe9\\nx: permission denied",
            id="name-not-utf-8",
        ),
    ],
)
def test_os_error_message_never_raises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, make_error, expected) -> None:
    error = make_error(tmp_path, monkeypatch)
    message = os_error_message(error, tmp_path / "out")
    assert expected in message and "\n" not in message and message.encode("utf-8"), message
    assert message.endswith("run the same command again to resume.") and len(message) < 800


def test_an_output_path_too_long_ends_with_one_paragraph(tmp_path: Path) -> None:
    recipe = fault_stages.write_recipe(tmp_path, 1)
    exit_code, output = syngen("run", recipe, "--out", tmp_path / ("n" * 5000), "--no-progress")
    assert exit_code == 1 and "too long for the file system" in output and "(5" in output, output


def test_seed_names_in_any_encoding_reach_every_report_the_same_way(tmp_path: Path) -> None:
    """Latin-1 bytes, a newline and 255 bytes in seed names: the run and the export finish, and failures.jsonl,
    run.json and the dataset name each file with the same printable UTF-8 text."""
    recipe, out = fault_stages.write_recipe(tmp_path, 1), tmp_path / "out"
    seeds = os.fsencode(tmp_path / "seeds")
    image = (tmp_path / "seeds" / "seed 00.png").read_bytes()
    for raw, content in [(b"caf\xe9.png", image), (b"two\nlines.png", image), (b"l" * 251 + b".png", image)]:
        Path(os.fsdecode(os.path.join(seeds, raw))).write_bytes(content)
    Path(os.fsdecode(os.path.join(seeds, b"cut\xff.png"))).write_bytes(image[:30])  # a failure
    os.mkfifo(os.path.join(seeds, b"pipe\xe9.png"))  # skipped
    exit_code, output = syngen("run", recipe, "--out", out, "--no-progress")
    assert exit_code == 0, output
    failures = [json.loads(line) for line in (out / "failures.jsonl").read_text(encoding="utf-8").splitlines()]
    assert {(f["item"], f["kind"]) for f in failures} == {("cut\\xff.png", "bad_image"), ("pipe\\xe9.png", "skipped")}
    assert json.loads((out / "run.json").read_text())["skipped"] == {"pipe\\xe9.png": "not a regular file"}
    rows = pq.read_table(out / "dataset/data/grounding", columns=["provenance"]).column(0).to_pylist()
    items = {row["source_item"] for row in rows}
    assert items == {"seed 00.png", "caf\\xe9.png", "two\\nlines.png", "l" * 251 + ".png"}
    (out / "dataset" / "README.md").read_text(encoding="utf-8")  # the card is UTF-8 text
    assert syngen("export", out)[0] == 0


def test_ctrl_c_gives_the_prompt_back_within_5_s_and_keeps_what_was_done(tmp_path: Path) -> None:
    """The quickstart on its tiny twins, stopped by SIGINT once its third model is loaded: the process ends within
    5 s (not after the worker threads' queued work and the interpreter's teardown of torch), and a rerun resumes."""
    out = tmp_path / "out"
    command = [sys.executable, "-m", "syngen.cli", "run", "--out", str(out), "--no-progress"]
    env = os.environ | {"HF_HUB_OFFLINE": "1", "COLUMNS": "200", "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # Ctrl-C even if this process ignores it
    )
    assert proc.stderr is not None
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "phrases: loaded" in line:
            break
    proc.send_signal(signal.SIGINT)
    sent = time.monotonic()
    _, rest = proc.communicate(timeout=120)
    elapsed = time.monotonic() - sent
    output = "".join(seen) + rest
    assert proc.returncode == 130 and elapsed < 5, f"{elapsed:.1f} s: {output}"
    assert "loading models…" in output and "stopped by Ctrl-C" in output and "Traceback" not in output
    resumed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    stages = json.loads((out / "run.json").read_text())["stages"]
    assert stages["caption"]["computed"] < stages["caption"]["items_in"] == 6  # the first wave was kept


def test_a_busy_folder_is_refused_before_the_models_are_loaded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe, out = fault_stages.write_recipe(tmp_path, 2), tmp_path / "out"
    assert syngen("run", recipe, "--out", out, "--no-progress")[0] == 0

    def reached(*args: object, **kwargs: object) -> None:
        raise AssertionError("the executor started although another run holds the folder")

    monkeypatch.setattr("syngen.executors.local.run", reached)
    with FileLock(str(out / ".lock")):
        exit_code, output = syngen("run", recipe, "--out", out, "--no-progress")
    assert exit_code == 1 and "another syngen run is writing to" in output, output
    assert "loading models" not in output


def test_models_lists_sam3_backend_with_both_roles_and_its_twin() -> None:
    result = CliRunner().invoke(app, ["models"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "tiny:sam3" in result.output
    assert "sam3 (grounder, segmenter)" in result.output


@pytest.mark.parametrize("command", ["push", "export"])
@pytest.mark.parametrize(
    "repo_id", ["org/a b", "a--b", "org/name/extra", "-name"], ids=["space", "dashes", "three-parts", "leading-dash"]
)
def test_a_bad_repo_id_is_refused_before_any_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str, repo_id: str
) -> None:
    touched: list[str] = []
    monkeypatch.setattr("syngen.push.push_dataset", lambda *a, **k: touched.append("push"))
    monkeypatch.setattr("syngen.executors.base.export", lambda *a, **k: touched.append("export"))
    code, output = syngen(command, tmp_path, "--repo-id", repo_id)
    assert code == 2 and f"'{repo_id}': expected a Hub repo id" in output
    assert touched == []
