"""Benchmark: one stage store of a million samples (synthetic rows, no models).

Builds (once, then reused) a stage store of N samples written the way a run writes them, then measures, each
phase in a fresh process so that its peak memory is its own:

- open:    open the store and load its index (the manifest plus the few loose parts);
- pending: find which of N + NEW seed ids are not stored yet (the index loaded);
- resume:  open, find the pending ones and store them (batches of BATCH, fsync'ed, compaction included);
- export:  stream every stored row back in seed order, wave by wave (what export reads), counting them.

The seed ids (sha1 of each item, the source's work) are made before each phase's clock starts. Prints a table
of seconds, the phase process's peak resident memory (the seed id list included), and the number of files.

    python benchmarks/store.py                      # 1,000,000 samples under /tmp/syngen-bench-store
    python benchmarks/store.py --samples 100000 --folder /tmp/small
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

from syngen.sample import make_id
from syngen.store import StageStore

FINGERPRINT = "bench"
DATA = json.dumps({"caption": "a synthetic caption of about the length real captions have, " * 2, "score": 0.5})


def seed_ids(n: int) -> list[str]:
    return [make_id("bench", i) for i in range(n)]


def rows(ids: list[str]) -> list[dict]:
    return [{"input_id": i, "id": i, "status": "ok", "image": None, "data": DATA} for i in ids]


def store(folder: Path) -> StageStore:
    s = StageStore(folder, "caption")
    s.open(FINGERPRINT)
    return s


def build(folder: Path, samples: int, batch: int) -> None:
    s = store(folder)
    ids = seed_ids(samples)
    for start in range(0, samples, batch):
        s.write(rows(ids[start : start + batch]))
    s.compact()


def phase(name: str, folder: Path, samples: int, new: int, batch: int, wave: int) -> dict:
    """Run one phase; the seed ids (the source's work, not the store's) are made before the clock starts."""
    ids = seed_ids(samples + new)
    start = time.perf_counter()
    result: dict = {}
    if name == "open":
        result["indexed"] = len(store(folder).index())
    elif name == "pending":
        index = store(folder).index()
        start = time.perf_counter()
        result["pending"] = sum(i not in index for i in ids)
    elif name == "resume":
        s = store(folder)
        index = s.index()
        pending = [i for i in ids if i not in index]
        for k in range(0, len(pending), batch):
            s.write(rows(pending[k : k + batch]))
        s.compact()
        result["written"] = len(pending)
    elif name == "export":
        s = store(folder)
        count = 0
        for k in range(0, samples, wave):
            count += sum(map(len, s.read(ids[k : min(k + wave, samples)]).values()))
        result["rows"] = count
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["peak_rss_mib"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=1_000_000)
    parser.add_argument("--new", type=int, default=1000, help="seed ids not stored yet, for pending and resume")
    parser.add_argument("--batch", type=int, default=1000, help="samples per part file while building")
    parser.add_argument("--resume-batch", type=int, default=8, help="samples per part file when resuming")
    parser.add_argument("--wave", type=int, default=256, help="samples per read when exporting")
    parser.add_argument("--folder", type=Path, default=Path("/tmp/syngen-bench-store"))
    parser.add_argument("--phase", help=argparse.SUPPRESS)
    args = parser.parse_args()
    base, folder = args.folder / f"{args.samples}-built", args.folder / f"{args.samples}-work"
    if args.phase:
        print(json.dumps(phase(args.phase, folder, args.samples, args.new, args.resume_batch, args.wave)))
        return
    if not (base / "built").exists():
        start = time.perf_counter()
        build(base, args.samples, args.batch)
        (base / "built").write_text("")
        print(f"built {args.samples:,} samples in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    shutil.rmtree(folder, ignore_errors=True)
    shutil.copytree(base, folder)  # resume adds samples: work on a copy
    stage = folder / "stages" / "caption"
    print(f"store: {args.samples:,} samples, {len(list(stage.glob('*.parquet')))} parquet files in {stage}")
    print(f"machine: {os.cpu_count()} CPU cores, Python {sys.version.split()[0]}")
    print(f"{'phase':<8} {'seconds':>8} {'peak MiB':>9}  result")
    for name in ("open", "pending", "resume", "export"):
        cmd = [sys.executable, __file__, "--phase", name, *sys.argv[1:]]
        result = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
        seconds, peak = result.pop("seconds"), result.pop("peak_rss_mib")
        print(f"{name:<8} {seconds:>8.2f} {peak:>9}  {result}", flush=True)
    files = [p for p in stage.glob("*.parquet") if p.name.startswith(("part-", "chunk-"))]
    print(f"after resume: {len(files)} data files for {args.samples + args.new:,} samples")


if __name__ == "__main__":
    main()
