"""Scaling: total time and peak resident memory for N, 4N and 16N samples (memory must stay flat).

Each size runs in a fresh process (so peak RSS is that run's own): every stage on tiny twins over drawn images,
the export included. Prints samples, total seconds, seconds per sample, peak RSS and its ratio to the smallest
run's (target: at most 1.2 at 16N).

    python benchmarks/scaling.py [--n 16] [--size 128x96] [--wave-size 16]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from pipeline_run import peak_rss_mb, run_recipe, write_recipe

TARGET_RATIO = 1.2


def child(samples: int, size: tuple[int, int], wave_size: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        report = run_recipe(write_recipe(Path(tmp), samples, size, wave_size), Path(tmp) / "out")
    print(json.dumps({"samples": samples, "total_s": report["total_s"], "peak_rss_mb": peak_rss_mb()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--size", default="128x96", help="image width x height")
    parser.add_argument("--wave-size", type=int, default=16)
    parser.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    size = tuple(int(v) for v in args.size.split("x"))
    if args.child:
        child(args.child, size, args.wave_size)  # type: ignore[arg-type]
        return
    env = os.environ | {"HF_HUB_OFFLINE": "1"}
    rows = []
    for samples in (args.n, 4 * args.n, 16 * args.n):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(samples),
            "--size",
            args.size,
            "--wave-size",
            str(args.wave_size),
        ]
        out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True).stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
    print(f"tiny twins at {args.size}, wave size {args.wave_size}, {os.cpu_count()} CPU cores")
    print(f"{'samples':>8} {'total s':>8} {'s/sample':>9} {'peak RSS MB':>12} {'RSS ratio':>10}")
    for row in rows:
        ratio = row["peak_rss_mb"] / rows[0]["peak_rss_mb"]
        print(
            f"{row['samples']:8d} {row['total_s']:8.1f} {row['total_s'] / row['samples']:9.3f} "
            f"{row['peak_rss_mb']:12.0f} {ratio:10.2f}"
        )
    print(f"peak RSS at 16N / N: {rows[-1]['peak_rss_mb'] / rows[0]['peak_rss_mb']:.2f} (target <= {TARGET_RATIO})")


if __name__ == "__main__":
    main()
