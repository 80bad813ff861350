"""The CPU share of this process and how syngen splits it between torch's threads and its own pool.

The share is the smaller of the process's affinity (a Slurm job's or ``taskset``'s cores) and its cgroup CPU quota
(a container's ``--cpus``, a systemd or Slurm limit): cgroup v2 ``cpu.max`` (``"max 100000"`` or
``"200000 100000"``), cgroup v1 ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (``-1``: none), read for the
process's own cgroup and its ancestors (the smallest wins, as the kernel applies them all), and
``OMP_NUM_THREADS`` when set. A quota is rounded down (at least 1): a quota of 1.5 CPUs gets 1 thread. Threads
beyond the quota are throttled for the rest of each period, and torch's intra-op threads meet at a barrier after
every op, so one throttled thread stalls the others (docs/benchmarks.md, "Threads"); a thread less only gives up
the quota's fraction. A file that is missing or unreadable counts as no quota.

:func:`plan` splits a share between torch's intra-op threads (the calling thread counts as one) and syngen's pool
(encoding, compaction), so that together they do not exceed it (a run's context sets both:
:class:`syngen.engine.context.RunContext`).
"""

from __future__ import annotations

import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path

from syngen.settings import CpuThreads

__all__ = [
    "Threads",
    "cpu_share",
    "local_processes",
    "omp_threads",
    "plan",
    "quota_cpus",
    "set_torch_threads",
    "share_of",
    "usable_cpus",
]

CGROUP = Path("/sys/fs/cgroup")
PROC_CGROUP = Path("/proc/self/cgroup")
log = logging.getLogger(__name__)


def usable_cpus() -> int:
    """CPU cores this process may run on: its affinity where the system has one (a Slurm job's or taskset's
    share, not the whole machine), else every core."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="ascii").strip()
    except (OSError, UnicodeDecodeError):
        return None


def _ratio(quota: str | None, period: str | None) -> float | None:
    """CPUs granted by ``quota`` microseconds per ``period``; None for no quota (``max``, ``-1``, unreadable)."""
    try:
        q, p = int(quota or ""), int(period or "")
    except ValueError:
        return None
    return q / p if q > 0 and p > 0 else None


def _v2(folder: Path) -> float | None:
    quota, _, period = (_read(folder / "cpu.max") or "").partition(" ")
    return _ratio(quota, period)


def _v1(folder: Path) -> float | None:
    return _ratio(_read(folder / "cpu.cfs_quota_us"), _read(folder / "cpu.cfs_period_us"))


def _folders(mount: Path, own: str) -> list[Path]:
    """``mount`` joined with the process's cgroup path ``own`` and each of its ancestors up to ``mount``."""
    folders = [mount]
    parts = [p for p in own.split("/") if p]
    for i in range(1, len(parts) + 1):
        folders.append(mount.joinpath(*parts[:i]))
    return folders


def quota_cpus(root: Path = CGROUP, proc_cgroup: Path = PROC_CGROUP) -> float | None:
    """The CPUs this process's cgroup quota grants (e.g. 1.5), the smallest along its cgroup path; None when no
    quota is set or none can be read. ``root`` is the cgroup mount, ``proc_cgroup`` the process's cgroup list."""
    v2_path, v1_path = "", ""
    for line in (_read(proc_cgroup) or "").splitlines():
        hierarchy, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hierarchy == "0" and controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):
            v1_path = path
    found: list[float] = []
    if (root / "cpu.max").exists() or v2_path:  # cgroup v2 (in a container, the root is the container's own)
        found += [q for f in _folders(root, v2_path) if (q := _v2(f)) is not None]
    for name in ("cpu,cpuacct", "cpu"):  # cgroup v1: the cpu controller's mount
        mount = root / name
        if mount.is_dir():
            found += [q for f in _folders(mount, v1_path) if (q := _v1(f)) is not None]
            break
    return min(found) if found else None


def _env_count(name: str) -> int | None:
    """The environment variable ``name`` when it is a whole number >= 1, else None."""
    value = os.environ.get(name, "").strip()
    return int(value) if value.isdigit() and int(value) >= 1 else None


def omp_threads() -> int | None:
    """``OMP_NUM_THREADS`` when it is a whole number >= 1 (the usual cap a user, a job script or Ray sets), else
    None."""
    return _env_count("OMP_NUM_THREADS")


def cpu_share(affinity: int | None = None, quota: float | None = None, omp: int | None = None) -> int:
    """CPU threads this process may keep busy: ``affinity`` (default: :func:`usable_cpus`) capped by the cgroup
    ``quota`` (default: :func:`quota_cpus`) rounded down and by ``omp`` (default: :func:`omp_threads`), at
    least 1."""
    caps = [
        usable_cpus() if affinity is None else affinity,
        quota_cpus() if quota is None else quota,
        omp_threads() if omp is None else omp,
    ]
    return max(1, math.floor(min(c for c in caps if c is not None)))


def local_processes(default: int = 1) -> int:
    """The processes of this job on this machine: ``LOCAL_WORLD_SIZE`` (set by torchrun and ``accelerate launch``)
    when it is a whole number >= 1, else ``default``."""
    return _env_count("LOCAL_WORLD_SIZE") or default


@dataclass(frozen=True)
class Threads:
    """How a share of CPUs is used: ``torch`` intra-op threads (the calling thread is one of them) and ``pool``
    worker threads (0: the pool's work runs on the thread that submits it)."""

    torch: int
    pool: int


def share_of(setting: CpuThreads = "auto", processes: int = 1) -> int:
    """The CPU threads one of ``processes`` processes on this machine (e.g. training under ``accelerate launch``)
    may keep busy: its part of ``setting`` (``auto``: :func:`cpu_share`; a number: that share), at least 1."""
    share = cpu_share() if setting == "auto" else setting
    return max(1, share // max(1, processes))


def plan(setting: CpuThreads = "auto", gpu: bool = False, processes: int = 1) -> Threads:
    """The threads of :func:`share_of` ``(setting, processes)``. With one CPU, everything runs on the calling
    thread. Beside a GPU, torch's CPU threads only feed it and the pool does the CPU work (masks, encodings): torch
    gets 1, the pool the rest. On the CPU, the model gets the rest and the pool 1 (beside a CPU model the stages'
    CPU work runs inline; the pool compacts the stores)."""
    share = share_of(setting, processes)
    if share == 1:
        return Threads(torch=1, pool=0)
    return Threads(torch=1, pool=share - 1) if gpu else Threads(torch=share - 1, pool=1)


def set_torch_threads(setting: CpuThreads | None = "auto", processes: int = 1) -> int:
    """Sets torch's intra-op threads for work without syngen's pool (training, evaluation), one of ``processes``
    on this machine, and returns the count: ``setting`` when it is a number, else (None or ``auto``) the torch
    threads of :func:`plan` on the CPU: the share less one, which stays free for the process's other threads
    (data loading, logging, checkpoint writes) and whatever else runs on the machine."""
    import torch

    threads = setting if isinstance(setting, int) else plan("auto", processes=processes).torch
    torch.set_num_threads(threads)
    return threads
