"""Threads: wall time of the quickstart and of a short SFT run, at syngen's CPU threads (``auto``) and at torch's
default, on a quiet machine and beside one busy process, measured side by side in one run.

Each measurement runs in a fresh process (torch's thread count is set once per process), without
``OMP_NUM_THREADS`` or ``MKL_NUM_THREADS`` (they would cap both settings alike):

- ``auto``: as syngen runs (``runtime.cpu_threads: auto``; the trainer's ``cpu_threads`` unset);
- ``torch default``: syngen's sizing left out, as before it existed (torch's own thread count, syngen's pool at
  ``max(2, cores)``).

"Busy" starts one niced busy loop (``nice -n 10 python -c 'while True: pass'``) before the measurement and stops
it after. The SFT run trains ``--steps`` steps on tiny twins over the quickstart's dataset (made by a first,
untimed run, followed by an untimed one-step SFT run: the tiny twins and caches are built before any measured
run). With ``--repeats``, the order of the two settings alternates. A measurement that runs past ``--cap``
seconds is stopped and shown as ``>cap``.

    python benchmarks/threads.py [--steps 30] [--cap 300] [--repeats 1] [--work quickstart,sft]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

MODES = ("auto", "torch default")
TINY_SFT: dict[str, Any] = {
    "sam_model_name_or_path": "tiny:segmenter",
    "text_encoder_name_or_path": "tiny:text-encoder",
    "prompter_heads": 2,
    "per_device_train_batch_size": 4,
    "logging_steps": 10,
    "save_steps": 0,
    "report_to": "none",
}


def child(work: str, mode: str, folder: Path, steps: int) -> float:
    """Runs ``work`` (``quickstart`` or ``sft``) in this process in ``mode``; returns its wall seconds (imports and
    the process start left out, model loading included)."""
    import syngen.train.loop
    from syngen import cpus
    from syngen.assets import quickstart_recipe
    from syngen.executors.local import run
    from syngen.recipe import load_recipe
    from syngen.train.cli import run_objective
    from syngen.train.config import SftConfig

    if mode == "torch default":  # syngen's sizing left out: torch and the pool as they start
        setattr(cpus, "apply", _leave_alone)  # noqa: B010 (a stand-in of another signature)
        setattr(syngen.train.loop, "set_torch_threads", _leave_alone)  # noqa: B010
    start = time.perf_counter()
    if work == "quickstart":
        run(load_recipe(quickstart_recipe()), folder / "quickstart", fresh=True, progress=False)
    else:
        out = folder / f"sft-{mode.replace(' ', '-')}"
        config = SftConfig(dataset_name=str(folder / "data"), output_dir=str(out), max_steps=steps, **TINY_SFT)
        run_objective("sft", config)
    return time.perf_counter() - start


def _leave_alone(*_: Any) -> int:
    """Stands in for syngen's thread sizing (torch default): sets nothing."""
    return 0


def measure(work: str, mode: str, folder: Path, steps: int, cap: float) -> float | None:
    """Wall seconds of ``work`` in ``mode`` in a fresh process; None when it ran past ``cap``."""
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    env.setdefault("HF_HUB_OFFLINE", "1")
    command = [sys.executable, __file__, "--child", work, "--mode", mode, "--folder", str(folder)]
    try:
        done = subprocess.run(
            [*command, "--steps", str(steps)], env=env, capture_output=True, text=True, timeout=cap, check=True
        )
    except subprocess.TimeoutExpired:
        return None
    except subprocess.CalledProcessError as err:
        raise SystemExit(f"{work} ({mode}) failed:\n{err.stderr[-3000:]}") from None
    return float(json.loads(done.stdout.strip().splitlines()[-1])["wall_s"])


def busy_loop() -> subprocess.Popen:
    """One niced busy process."""
    return subprocess.Popen(["nice", "-n", "10", sys.executable, "-c", "while True: pass"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30, help="SFT optimizer steps")
    parser.add_argument("--cap", type=float, default=300, help="seconds a measurement may take")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--work", default="quickstart,sft", help="what to measure, comma-separated")
    parser.add_argument("--child", choices=["quickstart", "sft"], help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=MODES, help=argparse.SUPPRESS)
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps({"wall_s": child(args.child, args.mode, args.folder, args.steps)}))
        return

    from syngen.cpus import cpu_share, plan, quota_cpus, usable_cpus

    os.environ.setdefault("SYNGEN_CACHE", tempfile.mkdtemp(prefix="syngen-threads-cache-"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        prepare(folder)
        saved = {k: os.environ.pop(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in os.environ}
        share, cpu, gpu_plan = cpu_share(), plan("auto"), plan("auto", gpu=True)
        os.environ.update(saved)
        print(
            f"{usable_cpus()} usable cores, cgroup quota {quota_cpus() or 'none'}: share {share}; auto on cpu: torch "
            f"{cpu.torch} + pool {cpu.pool} threads (beside a GPU: {gpu_plan.torch} + {gpu_plan.pool}); SFT: "
            f"{args.steps} steps; load average {os.getloadavg()[0]:.1f} at start"
        )
        print(f"{'work':>10} {'machine':>8} {'auto s':>8} {'torch default s':>16} {'ratio':>6}")
        for work in args.work.split(","):
            for machine in ("quiet", "busy"):
                for repeat in range(args.repeats):
                    busy = busy_loop() if machine == "busy" else None
                    order = MODES if repeat % 2 == 0 else MODES[::-1]  # alternated: a drift in load cancels out
                    try:
                        measured = {mode: measure(work, mode, folder, args.steps, args.cap) for mode in order}
                        walls = [measured[mode] for mode in MODES]
                    finally:
                        if busy is not None:
                            busy.kill()
                            busy.wait()
                    shown = [f"{w:.1f}" if w is not None else f">{args.cap:.0f}" for w in walls]
                    auto, default = walls
                    ratio = f"{default / auto:.1f}" if auto is not None and default is not None else "-"
                    print(f"{work:>10} {machine:>8} {shown[0]:>8} {shown[1]:>16} {ratio:>6}", flush=True)
        print(f"load average {os.getloadavg()[0]:.1f} at the end")


def prepare(folder: Path) -> None:
    """The quickstart's dataset in ``folder / "data"`` (the SFT runs' data) and a one-step SFT run on it: builds
    the tiny twins and the dataset's caches, so that no measured run pays for them."""
    from syngen.assets import quickstart_recipe
    from syngen.executors.local import run
    from syngen.recipe import load_recipe
    from syngen.train.cli import run_objective
    from syngen.train.config import SftConfig

    run(load_recipe(quickstart_recipe()), folder / "data", fresh=True, progress=False)
    config = SftConfig(dataset_name=str(folder / "data"), output_dir=str(folder / "warm"), max_steps=1, **TINY_SFT)
    run_objective("sft", config)


if __name__ == "__main__":
    main()
