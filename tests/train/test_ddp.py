"""Data parallel on CPU: two processes under `accelerate launch` see disjoint batches and end with one model,
and resume from a checkpoint to the same weights."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from syngen.devtools.shapes import make_shapes_dataset
from syngen.train.policy import TextPromptableSam

REPO = Path(__file__).resolve().parents[2]
# PITFALLS.md: `--cpu --num_processes 2` starts one process; these flags start two
LAUNCH = ["--multi_gpu", "--num_processes", "2", "--num_machines", "1", "--mixed_precision", "no"]


@pytest.mark.skipif(shutil.which("accelerate") is None and not Path(sys.executable).with_name("accelerate").exists(),
                    reason="no accelerate command")  # fmt: skip
def launch(data: Path, out: Path, *args: str) -> None:
    """Runs ddp_worker.py on two CPU processes."""
    accelerate = shutil.which("accelerate") or str(Path(sys.executable).with_name("accelerate"))
    cmd = [accelerate, "launch", *LAUNCH, "--dynamo_backend", "no", "--main_process_port", "0",
           str(REPO / "tests/train/ddp_worker.py"), str(data), str(out), *args]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def test_two_cpu_processes_train_data_parallel_and_resume(tmp_path: Path) -> None:
    data = make_shapes_dataset(tmp_path / "shapes", images=4, kinds=())  # 8 regions: 2 steps of 2 × 2 per epoch
    out = tmp_path / "run"
    launch(data, out)

    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    assert [r["world"] for r in ranks] == [2, 2]
    steps = [r["seen"] for r in ranks]
    assert [len(s) for s in steps] == [4, 4]  # 4 optimizer steps each
    for epoch in range(2):  # per epoch the two ranks split the 8 regions between them
        shares = [{i for batch in s[2 * epoch : 2 * epoch + 2] for i in batch} for s in steps]
        assert shares[0].isdisjoint(shares[1])
        assert shares[0] | shares[1] == set(range(8))

    weights = [load_file(out / f"rank{r}.safetensors") for r in range(2)]
    saved = load_file(out / "model.safetensors")  # the final model, written by the main process
    for key in weights[0]:
        assert torch.equal(weights[0][key], weights[1][key]), key
        if key in saved:
            assert torch.equal(saved[key], weights[0][key]), key
    torch.manual_seed(0)  # the loop's seed: the same initial prompter
    initial = TextPromptableSam.from_parts("tiny:segmenter", "tiny:text-encoder", prompter_heads=2).state_dict()
    assert not torch.equal(initial["sparse"], weights[0]["sparse"])  # it trained

    # each process saved its own random states into checkpoint-2; resumed there, both end as the whole run did
    assert sorted(p.name for p in (out / "checkpoint-2" / "state").glob("rng-*")) == [
        f"rng-{r}.safetensors" for r in range(2)
    ]
    resumed = Path(shutil.copytree(out, tmp_path / "resumed", ignore=shutil.ignore_patterns("rank*")))
    launch(data, resumed, "resume")
    for r in range(2):
        record = json.loads((resumed / f"rank{r}.json").read_text())
        assert record["seen"] == steps[r][2:]  # steps 3 and 4 only, on the same examples
        again = load_file(resumed / f"rank{r}.safetensors")
        for key in weights[0]:
            assert torch.equal(again[key], weights[0][key]), key
