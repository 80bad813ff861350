"""Overhead: CPU milliseconds per sample that syngen spends outside the model forward passes, in all its threads.

Runs every stage on tiny twins over ``--samples`` drawn images at 320 x 240 (the models are tiny, so what is left
is syngen's own work: decoding, encoding, masks, the store, the export). Counts CPU time, not wall time, so the
figure holds on a loaded machine (benchmarks/cpu_ledger.py says how each part is counted), and prints per sample:
each stage's own work (main thread), each model wrapper's pre- and post-processing apart from its forward passes,
the pool's tasks (e.g. PNG encoding), the store writer, the export thread and the rest of the process; then
syngen's total (everything but forward passes, model loading and preflight) against the target, the floor (image
encoding and the library kernels whose results the pinned rows fix: ``cpu_ledger.KERNELS``) and the rest, and the
forward passes for reference. Then a profile of the top remaining costs from a second, profiled run over
``--profile-samples`` images (cProfile slows the code, so its times are only for ranking).

    python benchmarks/overhead.py [--samples 200] [--profile-samples 50] [--top 20] [--overlap auto|on|off]
        [--device cpu|cuda] [--png-compress-level 0-9]

Torch runs one intra-op thread (``runtime.cpu_threads: 2`` on the CPU: torch 1 and the pool 1; beside a GPU torch
gets 1 anyway), which the forward-pass count needs. ``taskset -c 0,1`` limits the run to two cores.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
from pathlib import Path

import torch
from cpu_ledger import Ledger
from pipeline_run import run_recipe, write_recipe

from syngen.cpus import usable_cpus

TARGET_MS = 30.0
LEFT_OUT = ("model forward passes", "model loading", "preflight")  # not syngen's own work


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--profile-samples", type=int, default=50, help="0: no profile")
    parser.add_argument("--top", type=int, default=20, help="functions in the profile")
    parser.add_argument("--overlap", choices=["auto", "on", "off"], default="auto", help="runtime.overlap")
    parser.add_argument("--device", default="cpu", help="runtime.device")
    parser.add_argument("--png-compress-level", type=int, help="synthesize's png_compress_level; default: PIL's")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    threads = 2 if args.device == "cpu" else "auto"

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        options = {
            "overlap": args.overlap,
            "device": args.device,
            "cpu_threads": threads,
            "png_compress_level": args.png_compress_level,
        }
        recipe = write_recipe(folder / "main", args.samples, (320, 240), **options)
        with Ledger().watch() as ledger:
            report = run_recipe(recipe, folder / "main" / "out")
        if torch.get_num_threads() != 1:
            raise SystemExit(f"torch ran {torch.get_num_threads()} threads: the forward passes' count needs 1")
        n = args.samples
        print(f"{n} samples at 320x240 on tiny twins, {args.device}, {usable_cpus()} CPU cores, overlap "
              f"{args.overlap}; wall {report['total_s']:.1f} s; process CPU {ledger.total:.1f} s")  # fmt: skip
        print(f"{'CPU ms/sample':>14}  part (all threads)")
        parts = sorted(ledger.parts.items(), key=lambda kv: (kv[0] in LEFT_OUT, -kv[1]))
        for part, seconds in [*parts, ("rest of the process", ledger.rest())]:
            print(f"{1000 * seconds / n:14.1f}  {part}{'  (left out)' if part in LEFT_OUT else ''}")
        own = ledger.total - sum(ledger.parts[p] for p in LEFT_OUT)
        print(f"{1000 * own / n:14.1f}  syngen's own work, all threads (target <= {TARGET_MS:.0f})")
        encoding = sum(s for part, s in ledger.parts.items() if part.startswith("image encoding"))
        print(f"{1000 * encoding / n:14.1f}    of which image encoding (its bytes are fixed at default settings)")
        print(f"{1000 * (own - encoding) / n:14.1f}    of which the rest")
        fixed = encoding + sum(ledger.kernels.values())
        print(f"{1000 * fixed / n:14.1f}  the floor: image encoding and the library kernels whose results the pinned "
              "rows fix, in any part:")  # fmt: skip
        for kernel, seconds in sorted(ledger.kernels.items(), key=lambda kv: -kv[1]):
            print(f"{1000 * seconds / n:14.1f}    {kernel}")
        print(f"{1000 * (own - fixed) / n:14.1f}  syngen's own work above the floor")
        print(f"model loads: {report.get('model_loads', 'not reported')}")

        if args.profile_samples:
            recipe = write_recipe(folder / "profiled", args.profile_samples, (320, 240), **options)
            profiler = cProfile.Profile()
            profiler.enable()
            run_recipe(recipe, folder / "profiled" / "out")
            profiler.disable()
            print(f"\nprofile over {args.profile_samples} samples: top {args.top} by own time, model code left out")
            print(f"{'own s':>8} {'cum s':>8} {'calls':>8}  function")
            for (path, line, func), (_, calls, own_s, cum, _) in top_costs(profiler, args.top):
                print(f"{own_s:8.2f} {cum:8.2f} {calls:8d}  {Path(path).name}:{line}({func})")


def top_costs(profiler: cProfile.Profile, top: int) -> list:
    """The profile's entries with the highest own time, leaving out the models' code (torch, transformers,
    diffusers and torch's built-ins): what remains is syngen's own work and the libraries it calls."""
    model_code = ("/torch/", "/transformers/", "/diffusers/", "/accelerate/", "/tokenizers/")
    entries = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    kept = [
        (key, value)
        for key, value in entries.items()
        if not any(part in key[0] for part in model_code) and "torch" not in key[2]
    ]
    return sorted(kept, key=lambda kv: -kv[1][2])[:top]


if __name__ == "__main__":
    main()
