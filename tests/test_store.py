"""The per-stage store: atomic part files, the done index, fingerprints."""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

from syngen.store import StageStore, StaleStore, to_json
from syngen.threads import Pool


def row(input_id: str, out_id: str | None, status: str = "ok", data: str = "{}") -> dict:
    return {"input_id": input_id, "id": out_id, "status": status, "image": None, "data": data}


def test_write_index_and_read_in_order(tmp_path: Path) -> None:
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    store.write([row("a", "a-0"), row("a", "a-1"), row("b", None, "failed")])
    store.write([row("c", "c")])
    assert set(store.index()) == {"a", "b", "c"}
    assert not list(store.dir.glob(".tmp-*"))
    reopened = StageStore(tmp_path, "caption")
    assert reopened.open("fp") is True
    rows = reopened.read(["a", "c"])
    assert [r["id"] for r in rows["a"]] == ["a-0", "a-1"] and [r["id"] for r in rows["c"]] == ["c"]


@pytest.mark.parametrize("drop_stale", [True, False], ids=["drops", "refuses"])
def test_other_fingerprint(tmp_path: Path, drop_stale: bool, caplog: pytest.LogCaptureFixture) -> None:
    store = StageStore(tmp_path, "ground")
    store.open("old")
    store.write([row("a", "a"), row("b", "b")])
    store.write([row("c", "c")])
    fresh = StageStore(tmp_path, "ground")
    if drop_stale:
        with caplog.at_level(logging.WARNING, logger="syngen.store"):
            assert fresh.open("new") is False
        assert "discarding 3 stored result(s) in 2 data file(s)" in caplog.text
        assert fresh.index() == {}
    else:
        with pytest.raises(StaleStore):
            fresh.open("new", drop_stale=False)
        kept = StageStore(tmp_path, "ground")
        assert kept.open("old") is True and set(kept.index()) == {"a", "b", "c"}


def test_to_json_converts_numpy() -> None:
    assert to_json({"a": np.float32(0.5), "b": np.arange(3), "c": np.int64(2)}) == '{"a":0.5,"b":[0,1,2],"c":2}'
    with pytest.raises(TypeError, match="cannot store object"):
        to_json({"x": object()})


def test_unreadable_part_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    store.write([row("a", "a")])
    store.write([row("b", "b")])
    damaged = sorted(store.dir.glob("part-*.parquet"))[0]
    damaged.write_bytes(damaged.read_bytes()[:20])
    reopened = StageStore(tmp_path, "caption")
    reopened.open("fp")
    with caplog.at_level(logging.WARNING, logger="syngen.store"):
        assert set(reopened.index()) == {"b"}
    assert "unreadable" in caplog.text and damaged.name in caplog.text
    assert (store.dir / f"corrupt-{damaged.name}").exists()


def rows_for(ids: range | list[int], fan_out: int = 1) -> list[dict]:
    return [row(f"s{i}", f"s{i}-{k}", data=f'{{"k":{k}}}') for i in ids for k in range(fan_out)]


def fill(store: StageStore, n: int, batch: int = 64, fan_out: int = 1) -> None:
    for start in range(0, n, batch):
        store.write(rows_for(range(start, min(start + batch, n)), fan_out))


@pytest.mark.parametrize(
    "samples, batch, fan_out",
    [
        pytest.param(2500, 64, 1, id="2500-samples"),
        pytest.param(999, 100, 1, id="under-one-chunk"),
        pytest.param(1200, 50, 3, id="fan-out-rows"),
    ],
)
def test_compaction_bounds_files_and_keeps_every_row(tmp_path: Path, samples: int, batch: int, fan_out: int) -> None:
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    fill(store, samples, batch, fan_out)
    store.compact()  # what a run does at its end
    files = store.data_files()
    assert len(files) <= -(-samples // 1000), [f.name for f in files]
    reopened = StageStore(tmp_path, "caption")
    reopened.open("fp")
    assert len(reopened.index()) == samples
    ids = [f"s{i}" for i in range(samples)]
    stored = reopened.read(ids)
    assert all([r["id"] for r in stored[i]] == [f"{i}-{k}" for k in range(fan_out)] for i in ids)
    on_disk = [i for f in files for i in pq.read_table(f, columns=["input_id"]).column(0).to_pylist()]
    assert len(on_disk) == samples * fan_out  # nothing duplicated by compaction


def test_opening_reads_the_manifest_not_the_chunks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    fill(store, 2100, 100)
    opened: list[str] = []
    real = pq.ParquetFile
    monkeypatch.setattr(pq, "ParquetFile", lambda path, *a, **k: opened.append(Path(path).name) or real(path, *a, **k))
    reopened = StageStore(tmp_path, "caption")
    reopened.open("fp")
    assert len(reopened.index()) == 2100
    assert not [name for name in opened if name.startswith("chunk-")]
    assert "manifest-r0.parquet" in opened


@pytest.mark.parametrize("step", ["after-chunk", "after-manifest"], ids=["killed-after-chunk", "killed-after-manifest"])
def test_compaction_killed_midway_rolls_forward(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, step: str) -> None:
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    fill(store, 990, 90)  # 11 loose parts, no compaction yet

    class Killed(Exception):
        pass

    def kill(*args: object, **kwargs: object) -> None:
        raise Killed

    if step == "after-chunk":
        monkeypatch.setattr(StageStore, "_write_manifest", kill)
    else:
        monkeypatch.setattr(Path, "unlink", kill)
    with pytest.raises(Killed):
        store.write(rows_for(range(990, 1010)))
    monkeypatch.undo()
    reopened = StageStore(tmp_path, "caption")
    reopened.open("fp")
    assert len(reopened.index()) == 1010
    on_disk = [i for f in reopened.data_files() for i in pq.read_table(f, columns=["input_id"]).column(0).to_pylist()]
    assert sorted(on_disk) == sorted(f"s{i}" for i in range(1010))  # one copy of each, whichever file holds it


def test_shards_index_each_other_and_compact_their_own(tmp_path: Path) -> None:
    shard0 = StageStore(tmp_path, "caption", rank=0, exclusive=False)
    shard1 = StageStore(tmp_path, "caption", rank=1, exclusive=False)
    for store in (shard0, shard1):
        store.open("fp")
    fill(shard0, 1100, 100)
    shard1.write(rows_for(range(5000, 5010)))
    assert {p.name.split("-")[1] for p in shard0.data_files()} == {"r0", "r1"}
    assert len([p for p in shard0.data_files() if p.name.startswith("part-r1")]) == 1  # shard 0 left it alone
    whole = StageStore(tmp_path, "caption")
    whole.open("fp")
    assert len(whole.index()) == 1110


def test_stale_discard_killed_midway_never_adopts_old_parts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = StageStore(tmp_path, "ground")
    store.open("old")
    store.write([row("a", "a")])

    def killed(path: Path, *args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # the process dies after the rename, before the delete

    monkeypatch.setattr("syngen.store.shutil.rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        StageStore(tmp_path, "ground").open("new")
    monkeypatch.undo()
    assert not (tmp_path / "stages" / "ground").exists()  # the folder went aside whole, fingerprint with parts
    again = StageStore(tmp_path, "ground")
    assert again.open("new") is True  # nothing of the old settings is left to drop
    assert again.index() == {}
    assert [p.name for p in (tmp_path / "stages").iterdir() if p.name != ".open.lock"] == ["ground"]


def test_parts_without_a_fingerprint_are_not_adopted(tmp_path: Path) -> None:
    store = StageStore(tmp_path, "ground")
    store.open("old")
    store.write([row("a", "a")])
    (store.dir / "fingerprint.json").unlink()  # what an old syngen's interrupted discard left behind
    with pytest.raises(StaleStore):
        StageStore(tmp_path, "ground").open("new", drop_stale=False)
    fresh = StageStore(tmp_path, "ground")
    assert fresh.open("new") is False
    assert fresh.index() == {} and fresh.data_files() == []


def test_a_part_made_under_another_fingerprint_is_set_aside(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    old = StageStore(tmp_path / "old", "ground")
    old.open("old")
    old.write([row("a", "a")])
    store = StageStore(tmp_path, "ground")
    store.open("new")
    store.write([row("b", "b")])
    foreign = old.data_files()[0]
    foreign.rename(store.dir / foreign.name)  # copied in by hand, say
    reopened = StageStore(tmp_path, "ground")
    reopened.open("new")
    with caplog.at_level(logging.WARNING, logger="syngen.store"):
        assert set(reopened.index()) == {"b"}
    assert "another fingerprint" in caplog.text
    assert (store.dir / f"stale-{foreign.name}").exists()


@pytest.mark.parametrize(
    "rank, exclusive, left",
    [
        pytest.param(0, True, [], id="whole-run-cleans-all"),
        pytest.param(0, False, [".tmp-part-r1-2-b.parquet"], id="shard-cleans-its-own"),
    ],
)
def test_leftover_temporary_files_are_cleaned_at_start(
    tmp_path: Path, rank: int, exclusive: bool, left: list[str]
) -> None:
    folder = tmp_path / "stages" / "caption"
    folder.mkdir(parents=True)
    for name in (".tmp-part-r0-1-a.parquet", ".tmp-part-r1-2-b.parquet", ".tmp-manifest-r0.parquet"):
        (folder / name).write_bytes(b"half a parquet file")
    StageStore(tmp_path, "caption", rank, exclusive=exclusive).open("fp")
    assert sorted(p.name for p in folder.glob(".tmp-*")) == left


def test_files_are_fsynced_before_the_rename(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr("syngen.store.os.fsync", lambda fd: events.append("fsync") or real_fsync(fd))
    monkeypatch.setattr(
        "syngen.store.os.replace", lambda a, b: events.append(f"rename {Path(b).name[:4]}") or real_replace(a, b)
    )
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    events.clear()
    store.write([row("a", "a")])
    assert events == ["fsync", "rename part"]
    events.clear()
    fill(store, 1000, 500)  # compaction: the chunk and the manifest, each synced before its rename
    assert events[-4:] == ["fsync", "rename chun", "fsync", "rename mani"]


def test_drop_failed_keeps_the_successes_in_place(tmp_path: Path) -> None:
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    store.write([row("a", "a"), row("b", None, "failed"), row("c", "c")])
    store.write([row("d", None, "failed")])
    store.write([row("e", "e")])
    before = {p.name: p.read_bytes() for p in store.dir.glob("part-*.parquet")}
    assert store.drop_failed() == 2
    reopened = StageStore(tmp_path, "caption")
    reopened.open("fp")
    assert set(store.index()) == {"a", "c", "e"} and set(reopened.index()) == {"a", "c", "e"}
    after = {p.name: p.read_bytes() for p in store.dir.glob("part-*.parquet")}
    assert len(after) == 2 and set(after) < set(before)  # the all-failed part is gone, the others keep their names
    assert [after[name] == before[name] for name in sorted(after)].count(True) == 1  # the clean part is untouched
    assert [r["id"] for r in store.read(["a", "c"])["a"] + store.read(["c"])["c"]] == ["a", "c"]
    assert not list(store.dir.glob(".tmp-*")) and store.drop_failed() == 0


def test_drop_failed_inside_chunks_keeps_the_index_right(tmp_path: Path) -> None:
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    for start in range(0, 1500, 100):  # every tenth sample failed; the first 1000+ end up in a chunk
        store.write(
            [row(f"s{i}", None, "failed") if i % 10 == 0 else row(f"s{i}", f"s{i}") for i in range(start, start + 100)]
        )
    store.compact()
    assert [p.name[:5] for p in store.data_files()] == ["chunk", "chunk"]
    assert store.drop_failed() == 150
    reopened = StageStore(tmp_path, "caption")
    reopened.open("fp")
    expected = {f"s{i}" for i in range(1500) if i % 10}
    assert set(reopened.index()) == expected
    assert all(rows[0]["id"] == i for i, rows in reopened.read(sorted(expected)).items())


def test_a_write_without_waiting_lands_in_the_writer_thread_before_anything_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events: list[tuple[str, str]] = []
    gate = threading.Event()
    real_write = pq.write_table

    def slow_write(table, where, **kw):  # held until the caller has gone on
        gate.wait(5)
        events.append(("written", threading.current_thread().name))
        return real_write(table, where, **kw)

    monkeypatch.setattr("syngen.store.pq.write_table", slow_write)
    store = StageStore(tmp_path, "caption", writer=Pool(1, "syngen-store"))
    store.open("fp")
    store.write([row("a", "a")], wait=False)
    events.append(("returned", threading.current_thread().name))
    assert "a" in store.index()  # counts as stored at once
    gate.set()
    assert [r["id"] for r in store.read(["a"])["a"]] == ["a"]  # waits for the file
    assert [kind for kind, _ in events] == ["returned", "written"]
    assert events[1][1].startswith("syngen-store")
    assert len(store.data_files()) == 1 and not list(store.dir.glob(".tmp-*"))


@pytest.mark.parametrize("next_call", ["write", "compact", "data_files"])
def test_an_error_of_a_write_without_waiting_is_raised_by_the_next_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, next_call: str
) -> None:
    real_write = pq.write_table
    failing = [True]

    def full_disk(table, where, **kw):
        if failing.pop(0) if failing else False:
            raise OSError(28, "No space left on device")
        return real_write(table, where, **kw)

    monkeypatch.setattr("syngen.store.pq.write_table", full_disk)
    store = StageStore(tmp_path, "caption", writer=Pool(1, "syngen-store"))
    store.open("fp")
    store.write([row("a", "a")], wait=False)  # returns: the error comes later
    with pytest.raises(OSError, match="No space left"):
        {"write": lambda: store.write([row("b", "b")]), "compact": store.compact, "data_files": store.data_files}[
            next_call
        ]()
    store.write([row("c", "c")])  # the store goes on after the error was raised once
    reopened = StageStore(tmp_path, "caption")
    reopened.open("fp")
    assert set(reopened.index()) == {"c"}  # a's file never landed: a rerun computes it again


class Killed(Exception):
    """A kill, raised where the test plants it."""


def test_drop_failed_killed_before_the_manifest_is_rebuilt_recomputes_the_failures(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old manifest still lists the dropped ids and the old row groups: it must be gone before the chunks
    are rewritten, so that a kill in between leaves a store that indexes the chunks themselves."""
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    for start in range(0, 1200, 100):
        store.write(
            [row(f"s{i}", None, "failed") if i % 10 == 0 else row(f"s{i}", f"s{i}") for i in range(start, start + 100)]
        )
    store.compact()
    real = StageStore._rebuild_manifest

    def kill(self: StageStore, rank: int, chunks: list[Path]) -> object:
        if any("failed" not in pq.read_table(c, columns=["status"]).column(0).to_pylist() for c in chunks):
            raise Killed  # a chunk was rewritten without its failures: killed before the manifest is rebuilt
        return real(self, rank, chunks)

    monkeypatch.setattr(StageStore, "_rebuild_manifest", kill)
    with pytest.raises(Killed):
        store.drop_failed()
    monkeypatch.undo()
    reopened = StageStore(tmp_path, "caption")
    reopened.open("fp")
    expected = {f"s{i}" for i in range(1200) if i % 10}
    assert set(reopened.index()) == expected  # the failed ones count as not done: they are computed again
    assert all(rows[0]["id"] == i for i, rows in reopened.read(sorted(expected)).items())


@pytest.mark.parametrize("reopen", [False, True], ids=["same-store", "reopened"])
def test_a_small_chunk_is_merged_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, reopen: bool) -> None:
    """A run's end compacts its few loose parts into an undersized chunk; the next compaction takes it in again,
    so resumed runs do not pile up small chunks."""
    monkeypatch.setattr("syngen.store.CHUNK_SAMPLES", 10)
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    for rounds in range(3):
        store.write(rows_for(range(rounds * 2, rounds * 2 + 1)))
        store.write(rows_for(range(rounds * 2 + 1, rounds * 2 + 2)))
        store.compact()  # a run's end
        if reopen:
            store = StageStore(tmp_path, "caption")
            store.open("fp")
    assert [p.name[:5] for p in store.data_files()] == ["chunk"]
    assert len(store.index()) == 6 and sorted(store.read([f"s{i}" for i in range(6)])) == [f"s{i}" for i in range(6)]


def test_a_shard_reindexes_after_another_compacts_a_file_it_had_indexed(tmp_path: Path) -> None:
    shard0 = StageStore(tmp_path, "caption", rank=0, exclusive=False)
    shard1 = StageStore(tmp_path, "caption", rank=1, exclusive=False)
    for store in (shard0, shard1):
        store.open("fp")
    shard1.write(rows_for(range(0, 3)))
    shard1.write(rows_for(range(3, 6)))
    assert set(shard0.index()) == {f"s{i}" for i in range(6)}  # shard 0 indexed shard 1's two parts
    shard1.compact()  # merges them into a chunk and deletes them
    assert not list(shard1.dir.glob("part-*"))
    rows = shard0.read([f"s{i}" for i in range(6)])
    assert [rows[f"s{i}"][0]["id"] for i in range(6)] == [f"s{i}-0" for i in range(6)]


def varied_rows(seed: int, n: int) -> list[dict]:
    """Rows as stages write them: images (PNG-like random bytes, empty, none), JSON with RLE-like counts, unicode
    and escapes, fan-out rows and failures."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        counts = "".join(chr(c) for c in rng.integers(48, 112, int(rng.integers(0, 3000))))
        data = to_json({"mask": {"size": [96, 128], "counts": counts}, "caption": f'ünï "{i}"\n\t', "k": i})
        image = [None, b"", rng.bytes(int(rng.integers(1, 50_000)))][i % 3]
        status = "failed" if i % 7 == 3 else "ok"
        rows += [
            {"input_id": f"s{seed}-{i}", "id": f"s{seed}-{i}-{k}", "status": status, "image": image, "data": data}
            for k in range(1 + i % 2)
        ]
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2], ids=["seed-0", "seed-1", "seed-2"])
def test_rows_round_trip_through_parts_chunks_and_drop_failed_beside_old_snappy_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int
) -> None:
    """Data files are written without compression or dictionaries; what is read back is what was written, byte for
    byte, from these and from files written the old way (snappy, dictionaries: pyarrow's defaults) alike."""
    store = StageStore(tmp_path, "segment")
    store.open("fp")
    old = varied_rows(seed, 40)
    with monkeypatch.context() as patch:
        patch.setattr("syngen.store.DATA_OPTIONS", {})  # as syngen wrote its files before
        store.write(old[:30])
        store.write(old[30:])
    new = varied_rows(seed + 10, 40)
    store.write(new)
    written = {r["input_id"] for r in old + new}
    expected = {i: [r for r in old + new if r["input_id"] == i] for i in written}
    assert store.read(sorted(written)) == expected
    codecs = {
        pq.read_metadata(f).row_group(0).column(4).compression: f.name for f in store.data_files()
    }  # the data column
    assert set(codecs) == {"SNAPPY", "UNCOMPRESSED"}
    fresh = StageStore(tmp_path, "segment")
    fresh.open("fp")
    fresh.compact()
    assert [pq.read_metadata(f).row_group(0).column(4).compression for f in fresh.data_files()] == ["UNCOMPRESSED"]
    assert fresh.read(sorted(written)) == expected
    fresh.drop_failed()
    kept = {i: [r for r in rows if r["status"] == "ok"] for i, rows in expected.items()}
    kept = {i: rows for i, rows in kept.items() if rows}
    again = StageStore(tmp_path, "segment")
    again.open("fp")
    assert set(again.index()) == set(kept) and again.read(sorted(kept)) == kept
