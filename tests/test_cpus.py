"""The CPU share (affinity capped by a cgroup quota, read from mocked cgroup files) and its split between torch's
threads and syngen's pool."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syngen import cpus
from syngen.cpus import Threads, cpu_share, plan, quota_cpus, usable_cpus

V2 = "0::/user.slice/job\n"
V1 = "12:cpu,cpuacct:/docker/abc\n3:memory:/docker/abc\n"


def _set_env(monkeypatch: pytest.MonkeyPatch, name: str, value: str | None) -> None:
    """Sets the environment variable ``name`` to ``value``; None removes it."""
    if value is None:
        monkeypatch.delenv(name, raising=False)
    else:
        monkeypatch.setenv(name, value)


def _tree(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize(
    ("proc", "files", "expected"),
    [
        pytest.param(V2, {"cpu.max": "max 100000"}, None, id="v2-no-quota"),
        pytest.param(V2, {"cpu.max": "150000 100000"}, 1.5, id="v2-root-quota"),
        pytest.param(
            V2,
            {"cpu.max": "max 100000", "user.slice/cpu.max": "400000 100000", "user.slice/job/cpu.max": "50000 100000"},
            0.5,
            id="v2-smallest-along-the-path",
        ),
        pytest.param(V2, {"user.slice/job/cpu.max": "200000 100000"}, 2.0, id="v2-own-cgroup-only"),
        pytest.param("0::/\n", {"cpu.max": "300000 100000"}, 3.0, id="v2-container-namespace"),
        pytest.param(V2, {"cpu.max": "garbage"}, None, id="v2-unreadable-value"),
        pytest.param(V2, {"cpu.max": "0 100000"}, None, id="v2-zero-quota-ignored"),
        pytest.param(
            V1,
            {"cpu,cpuacct/cpu.cfs_quota_us": "-1", "cpu,cpuacct/cpu.cfs_period_us": "100000"},
            None,
            id="v1-no-quota",
        ),
        pytest.param(
            V1,
            {"cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "250000", "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000"},
            2.5,
            id="v1-quota",
        ),
        pytest.param(V1, {"cpu/cpu.cfs_quota_us": "100000", "cpu/cpu.cfs_period_us": "50000"}, 2.0, id="v1-cpu-mount"),
        pytest.param(V1, {"cpu,cpuacct/cpu.cfs_quota_us": "100000"}, None, id="v1-period-missing"),
        pytest.param("", {}, None, id="no-cgroup-files"),
    ],
)
def test_the_quota_is_read_from_the_cgroup_files(
    tmp_path: Path, proc: str, files: dict[str, str], expected: float | None
) -> None:
    root = tmp_path / "cgroup"
    root.mkdir()
    _tree(root, files)
    (tmp_path / "self-cgroup").write_text(proc)
    assert quota_cpus(root, tmp_path / "self-cgroup") == expected


def test_an_unreadable_quota_file_counts_as_none(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").mkdir()  # reading a folder raises IsADirectoryError, an OSError
    assert quota_cpus(tmp_path, tmp_path / "missing") is None


@pytest.mark.parametrize(
    ("affinity", "quota", "omp", "expected"),
    [
        pytest.param(8, None, None, 8, id="no-quota-affinity"),
        pytest.param(8, 1.5, None, 1, id="quota-1.5-rounds-down"),
        pytest.param(8, 0.5, None, 1, id="quota-under-one-is-one"),
        pytest.param(2, 16.0, None, 2, id="quota-above-affinity"),
        pytest.param(8, 3.99, None, 3, id="quota-3.99"),
        pytest.param(4, 4.0, None, 4, id="quota-equal"),
        pytest.param(8, 6.0, 2, 2, id="omp-below-both"),
        pytest.param(2, None, 16, 2, id="omp-above-affinity"),
    ],
)
def test_the_share_is_the_affinity_capped_by_the_quota(
    monkeypatch: pytest.MonkeyPatch, affinity: int, quota: float | None, omp: int | None, expected: int
) -> None:
    monkeypatch.setattr(cpus, "quota_cpus", lambda: None)  # a None argument means "read it": nothing to read
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    assert cpu_share(affinity, quota, omp) == expected


@pytest.mark.parametrize(
    ("omp", "expected"),
    [
        pytest.param(None, 6, id="unset"),
        pytest.param("1", 1, id="one"),
        pytest.param("4", 4, id="four"),
        pytest.param("0", 6, id="zero-ignored"),
        pytest.param("two", 6, id="text-ignored"),
        pytest.param("", 6, id="empty-ignored"),
    ],
)
def test_the_share_reads_the_machine_by_default(
    monkeypatch: pytest.MonkeyPatch, omp: str | None, expected: int
) -> None:
    monkeypatch.setattr(cpus, "usable_cpus", lambda: 6)
    monkeypatch.setattr(cpus, "quota_cpus", lambda: None)
    _set_env(monkeypatch, "OMP_NUM_THREADS", omp)
    assert cpu_share() == expected
    monkeypatch.setattr(cpus, "quota_cpus", lambda: 2.5)
    assert cpu_share() == min(2, expected)


@pytest.mark.parametrize(
    ("setting", "gpu", "processes", "expected"),
    [
        pytest.param("auto", False, 1, Threads(torch=3, pool=1), id="auto-cpu"),
        pytest.param("auto", True, 1, Threads(torch=1, pool=3), id="auto-gpu"),
        pytest.param(1, False, 1, Threads(torch=1, pool=0), id="one-cpu-all-inline"),
        pytest.param(1, True, 1, Threads(torch=1, pool=0), id="one-gpu-all-inline"),
        pytest.param(2, False, 1, Threads(torch=1, pool=1), id="two-cpu"),
        pytest.param(16, False, 1, Threads(torch=15, pool=1), id="fixed-above-share"),
        pytest.param("auto", False, 2, Threads(torch=1, pool=1), id="two-processes-halve-it"),
        pytest.param("auto", False, 8, Threads(torch=1, pool=0), id="more-processes-than-cpus"),
    ],
)
def test_torch_and_the_pool_together_stay_within_the_share(
    monkeypatch: pytest.MonkeyPatch, setting: int | str, gpu: bool, processes: int, expected: Threads
) -> None:
    monkeypatch.setattr(cpus, "cpu_share", lambda: 4)
    threads = plan(setting, gpu=gpu, processes=processes)  # type: ignore[arg-type]
    assert threads == expected
    share = 4 if setting == "auto" else setting
    assert threads.torch + threads.pool <= max(1, share // processes)  # type: ignore[operator]


@pytest.mark.parametrize(
    ("affinity", "cpu_count", "expected"),
    [
        pytest.param({0}, 64, 1, id="affinity-one-core-of-many"),
        pytest.param(None, 5, 5, id="no-affinity-api"),
        pytest.param(None, None, 1, id="no-affinity-api-unknown-count"),
    ],
)
def test_usable_cpus_is_the_share_the_process_may_run_on(
    monkeypatch: pytest.MonkeyPatch, affinity: set[int] | None, cpu_count: int | None, expected: int
) -> None:
    monkeypatch.setattr(os, "cpu_count", lambda: cpu_count)
    if affinity is None:
        monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    else:
        monkeypatch.setattr(os, "sched_getaffinity", lambda pid: affinity)
    assert usable_cpus() == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        pytest.param(None, 5, id="unset-default"),
        pytest.param("2", 2, id="two"),
        pytest.param("0", 5, id="zero-ignored"),
        pytest.param("x", 5, id="text-ignored"),
    ],
)
def test_local_processes_reads_the_launchers_count(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: int
) -> None:
    _set_env(monkeypatch, "LOCAL_WORLD_SIZE", value)
    assert cpus.local_processes(5) == expected


@pytest.mark.parametrize(
    ("setting", "processes", "expected"),
    [
        pytest.param(None, 1, 3, id="auto-leaves-one-free"),
        pytest.param("auto", 2, 1, id="auto-two-processes"),
        pytest.param(6, 1, 6, id="fixed-is-torchs"),
        pytest.param(6, 4, 6, id="fixed-is-per-process"),
    ],
)
def test_torch_threads_for_training_and_eval(
    monkeypatch: pytest.MonkeyPatch, setting: int | str | None, processes: int, expected: int
) -> None:
    import torch

    monkeypatch.setattr(cpus, "cpu_share", lambda: 4)
    assert cpus.set_torch_threads(setting, processes) == expected  # type: ignore[arg-type]
    assert torch.get_num_threads() == expected
