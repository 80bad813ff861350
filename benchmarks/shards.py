"""Benchmark: one process vs two shards (two processes, then `syngen export`) vs a local Ray cluster with two
workers, on the same recipe (default: the quickstart). Prints the wall time of each and whether the datasets
match the one-process run's (ids, and every column).

    python benchmarks/shards.py                       # needs the ray extra for the third row
    python benchmarks/shards.py --recipe my.yaml --limit 50 --folder /tmp/bench-shards
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parent.parent


def syngen(*args: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "syngen.cli", *args, *(["--no-progress"] if args[0] == "run" else [])]
    return subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def wait(*procs: subprocess.Popen) -> None:
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode:
            raise SystemExit(f"failed: {' '.join(proc.args)}\n{err[-3000:]}")


def rows(out: Path) -> dict[str, list[dict]]:
    data = out / "dataset" / "data"
    return {
        c.name: [r for f in sorted(c.glob("*.parquet")) for r in pq.read_table(f).to_pylist()] for c in data.iterdir()
    }


def compare(out: Path, reference: Path) -> str:
    mine, ref = rows(out), rows(reference)
    if {c: [r["id"] for r in v] for c, v in mine.items()} != {c: [r["id"] for r in v] for c, v in ref.items()}:
        return "different ids"
    differing = sorted({k for c in ref for a, b in zip(mine[c], ref[c], strict=True) for k in a if a[k] != b[k]})
    return "identical" if not differing else "same ids; columns differing: " + ", ".join(differing)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--recipe", type=Path, default=REPO / "recipes" / "quickstart.yaml")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/syngen-bench-shards"))
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray row")
    args = parser.parse_args()
    shutil.rmtree(args.folder, ignore_errors=True)
    common = [str(args.recipe)] + (["--limit", str(args.limit)] if args.limit else [])
    wait(syngen("models", "--build"))  # tiny twins built once, outside the timings
    results = []

    one = args.folder / "one"
    start = time.perf_counter()
    wait(syngen("run", *common, "--out", str(one)))
    results.append(("one process", time.perf_counter() - start, "reference"))

    two = args.folder / "two-shards"
    start = time.perf_counter()
    wait(*[syngen("run", *common, "--out", str(two), "--shard", f"{k}/2") for k in range(2)])
    wait(syngen("export", str(two)))
    results.append(("2 shards (2 processes + export)", time.perf_counter() - start, compare(two, one)))

    if not args.no_ray:
        ray = args.folder / "ray"
        start = time.perf_counter()
        wait(syngen("run", *common, "--out", str(ray), "--ray", "local", "--workers", "2", "--shards", "4"))
        results.append(("Ray, 2 workers, 4 shards", time.perf_counter() - start, compare(ray, one)))

    limit = f" --limit {args.limit}" if args.limit else ""
    print(f"recipe: {args.recipe.name}{limit}; machine: {os.cpu_count()} CPU cores")
    print(f"{'executor':<34} {'wall s':>7}  dataset vs one process")
    for name, seconds, same in results:
        print(f"{name:<34} {seconds:>7.1f}  {same}")


if __name__ == "__main__":
    main()
