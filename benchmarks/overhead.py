"""Overhead: milliseconds per sample a run spends outside model calls and model loading.

Runs every stage on tiny twins over ``--samples`` drawn images at 320 x 240 (the models are tiny, so what is left
is syngen's own work: decoding, encoding, masks, the store, the export). Prints, per stage and overall (preflight
excluded), (wall - model - load) / samples, the model and load time for reference, then a profile of the top
remaining costs from a second, profiled run over ``--profile-samples`` images (cProfile slows the code, so its
times are only for ranking).

    python benchmarks/overhead.py [--samples 200] [--profile-samples 50] [--top 20] [--overlap auto|on|off]
        [--device cpu|cuda]

With ``--device cuda`` the tiny twins run on the GPU (their calls are then mostly kernel launches): the figure is
what syngen costs around the models on a GPU machine; ``taskset -c 0,1`` limits it to two cores.

With ``--overlap on`` the source and views run in worker threads beside the model stages (as on a GPU): their
rows then show their own wall time, which overlaps the other stages', and only the overall figure counts.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import tempfile
from pathlib import Path

from pipeline_run import overhead, run_recipe, write_recipe

from syngen.threads import usable_cpus

TARGET_MS = 20.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--profile-samples", type=int, default=50, help="0: no profile")
    parser.add_argument("--top", type=int, default=20, help="functions in the profile")
    parser.add_argument("--overlap", choices=["auto", "on", "off"], default="auto", help="runtime.overlap")
    parser.add_argument("--device", default="cpu", help="runtime.device")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        recipe = write_recipe(folder / "main", args.samples, (320, 240), overlap=args.overlap, device=args.device)
        report = run_recipe(recipe, folder / "main" / "out")
        per_stage = overhead(report)
        n = args.samples
        total = report["total_s"]
        cores = usable_cpus()
        where = f"{args.device}, {cores} CPU cores, overlap {args.overlap}"
        print(f"{n} samples at 320x240 on tiny twins, {where}; total {total:.1f} s")
        print(f"{'stage':>12} {'overhead ms/sample':>19} {'model ms/sample':>16} {'load s':>7}")
        for name, stage in report["stages"].items():
            ms, model_ms = 1000 * per_stage[name] / n, 1000 * stage["model_s"] / n
            print(f"{name:>12} {ms:19.1f} {model_ms:16.1f} {stage['load_s']:7.2f}")
        overall = 1000 * per_stage["overall"] / n
        loading = 1000 * sum(s["load_s"] for s in report["stages"].values()) / n
        print(f"{'overall':>12} {overall:19.1f}   (target <= {TARGET_MS:.0f}; loading: {loading:.1f} ms/sample more)")
        print(f"model loads: {report.get('model_loads', 'not reported')}")

        if args.profile_samples:
            recipe = write_recipe(
                folder / "profiled", args.profile_samples, (320, 240), overlap=args.overlap, device=args.device
            )
            profiler = cProfile.Profile()
            profiler.enable()
            run_recipe(recipe, folder / "profiled" / "out")
            profiler.disable()
            print(f"\nprofile over {args.profile_samples} samples: top {args.top} by own time, model code left out")
            print(f"{'own s':>8} {'cum s':>8} {'calls':>8}  function")
            for (path, line, func), (_, calls, own, cum, _) in top_costs(profiler, args.top):
                print(f"{own:8.2f} {cum:8.2f} {calls:8d}  {Path(path).name}:{line}({func})")


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
