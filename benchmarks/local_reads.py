"""Benchmark: reading a local dataset folder back, as train dpo reads it (both configs), by each candidate way.

Builds (once, then reused) a syngen dataset folder of PAIRS preference rows referring to PAIRS / 4 grounding
rows, each with its own small image and overlay (a real export of a few samples, its rows repeated with new ids
and new pictures, in shards of 1,000 rows as the export writes them, the card kept). Then times, each in a fresh
process (so no in-process memo helps and the peak memory is its own), both configs read into a
``datasets.Dataset``:

- ``card-keyed``: ``datasets.load_dataset(folder, config)``, datasets' own key (the folder's name and the card's
  metadata): wrong, a folder changed in place is read from the stale copy (what syngen did);
- ``mtime-keyed``: ``load_dataset("parquet", data_files=...)``, keyed by each file's path and modification
  time: wrong when a rewrite keeps the modification time (same clock tick, a coarse file system, ``cp -p``);
- ``content-keyed``: the cache folder named by an xxh3 digest of the files' bytes (:func:`syngen.data.read_dataset`);
- ``rebuild``: a new cache folder on every read (the parquet converted again each time);
- ``in-memory``: pyarrow reads the parquet into memory, no cache (memory grows with the dataset).

"first" is a read with nothing cached, "again" the next read of unchanged files (what every training or eval
run after the first pays). Prints one line per candidate: the median seconds first / again over --repeat reads,
and how far a read raised its process's peak RSS above what the imports took; then the digest's own time.

    python benchmarks/local_reads.py                        # 100,000 pairs under /tmp/syngen-bench-reads
    python benchmarks/local_reads.py --pairs 10000 --folder /tmp/small
"""

from __future__ import annotations

import argparse
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIGS = ("grounding", "preference")
CANDIDATES = ("card-keyed", "mtime-keyed", "content-keyed", "rebuild", "in-memory")


def picture(rng, size: int = 128) -> bytes:  # noqa: ANN001
    """A PNG of random coloured 4x4 blocks (about 5 KB)."""
    import numpy as np
    from PIL import Image

    blocks = rng.integers(0, 255, (size // 4, size // 4, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(np.kron(blocks, np.ones((4, 4, 1), np.uint8))).save(out, format="PNG")
    return out.getvalue()


def build(folder: Path, pairs: int) -> None:
    """Writes the dataset folder (see the module docstring)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from syngen.export import CardInfo, export_dataset
    from syngen.masks import encode_rle

    rng = np.random.default_rng(0)
    mask = np.zeros((128, 128), bool)
    mask[8:40, 8:40] = True
    region = {
        "phrase": "a block",
        "box": [8.0, 8.0, 40.0, 40.0],
        "box_score": 0.9,
        "mask": encode_rle(mask),
        "mask_score": 0.9,
        "negatives": [
            {"kind": "boundary", "mask": encode_rle(np.roll(mask, s, axis=1)), "iou": 0.6, "score": 0.5} for s in (2, 4)
        ],
    }
    samples = [
        {"id": f"s{i}", "image": picture(rng), "width": 128, "height": 128, "caption": "blocks",
         "phrases": ["a block"], "regions": [region, region]}
        for i in range(4)
    ]  # fmt: skip
    export_dataset(iter(samples), folder, CardInfo(name="bench", license="cc-by-4.0"))
    dataset = folder / "dataset"
    images = pairs // 4
    for config, rows in (("grounding", images), ("preference", pairs)):
        shards = sorted((dataset / "data" / config).glob("*.parquet"))
        seed = pq.read_table(shards[0])
        for shard in shards:
            shard.unlink()
        for start in range(0, rows, 1000):
            n = min(1000, rows - start)
            table = seed.take([i % seed.num_rows for i in range(n)])
            ids = [f"{config}{start + i:07d}" for i in range(n)]
            table = table.set_column(table.schema.get_field_index("id"), "id", pa.array(ids))
            if config == "grounding":
                for column in ("image", "overlay"):
                    cells = pa.array([{"bytes": picture(rng), "path": None} for _ in range(n)], table[column].type)
                    table = table.set_column(table.schema.get_field_index(column), column, cells)
            else:
                image_ids = pa.array([f"grounding{(start + i) // 4:07d}" for i in range(n)])
                table = table.set_column(table.schema.get_field_index("image_id"), "image_id", image_ids)
            pq.write_table(table, dataset / "data" / config / f"train-{start // 1000:05d}.parquet")


def read(candidate: str, folder: Path, cache: Path) -> int:
    """Both configs read by ``candidate`` into datasets; the number of pairs."""
    import datasets
    import pyarrow.parquet as pq

    from syngen.data import read_dataset

    dataset = folder / "dataset"
    counts = []
    for config in CONFIGS:
        files = sorted(str(p) for p in (dataset / "data" / config).glob("*.parquet"))
        if candidate == "content-keyed":  # the folder digested once per config (load_preference: once for both)
            ds = read_dataset(dataset, config, cache_dir=str(cache))
        elif candidate == "card-keyed":
            ds = datasets.load_dataset(
                str(dataset), config, split="train", verification_mode="no_checks", cache_dir=str(cache)
            )
        elif candidate == "mtime-keyed":
            ds = datasets.load_dataset("parquet", data_files=files, split="train", cache_dir=str(cache))
        elif candidate == "rebuild":
            ds = datasets.load_dataset(
                str(dataset),
                config,
                split="train",
                verification_mode="no_checks",
                cache_dir=tempfile.mkdtemp(dir=cache),
            )
        else:
            ds = datasets.Dataset(pq.read_table(files))
        counts.append(len(ds))
    return counts[-1]


def phase(candidate: str, folder: Path, cache: Path) -> dict:
    """Runs in a child process: the timed read and the process's peak RSS."""
    import datasets  # noqa: F401  (imports are not timed)

    import syngen.data  # noqa: F401

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start = time.perf_counter()
    counts = read(candidate, folder, cache)
    seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "rows": counts,
        "peak_mb": (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024,
    }


def child(candidate: str, folder: Path, cache: Path) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--phase", candidate, "--folder", str(folder), "--cache", str(cache)],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])},
    )
    if done.returncode:
        raise SystemExit(f"{candidate}: {done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=100_000)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/syngen-bench-reads"))
    parser.add_argument("--repeat", type=int, default=3, help="reads of each kind; the median is printed")
    parser.add_argument("--cache", type=Path, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--phase", choices=CANDIDATES, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args.phase, args.folder, args.cache)))
        return
    from syngen.data import fresh_cache_dir

    if not (args.folder / "dataset" / "README.md").exists():
        build(args.folder, args.pairs)
    files = [p for p in (args.folder / "dataset").rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in files) / 2**20
    print(f"folder: {args.folder / 'dataset'}: {len(files)} files, {size:.0f} MiB, {args.pairs} pairs")
    for candidate in CANDIDATES:
        firsts, agains = [], []
        for _ in range(args.repeat):
            with tempfile.TemporaryDirectory() as cache:
                firsts.append(child(candidate, args.folder, Path(cache)))
                agains.append(child(candidate, args.folder, Path(cache)))
        first, again = (statistics.median(r["seconds"] for r in runs) for runs in (firsts, agains))
        peak = max(r["peak_mb"] for r in firsts + agains)
        rows = agains[-1]["rows"]
        print(f"{candidate:>14}: first {first:6.2f} s  again {again:6.2f} s  peak RSS +{peak:5.0f} MB  pairs {rows}")
    start = time.perf_counter()
    fresh_cache_dir(files)
    print(f"the digest alone (xxh3 of {size:.0f} MiB): {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
