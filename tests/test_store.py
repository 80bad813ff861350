"""The per-stage store: atomic part files, the done index, fingerprints."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest

from syngen.store import StageStore, StaleStore, to_json


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
        assert "discarding 3 stored result(s) in 2 part file(s)" in caplog.text
        assert fresh.index() == {}
    else:
        with pytest.raises(StaleStore):
            fresh.open("new", drop_stale=False)
        assert set(StageStore(tmp_path, "ground").index()) == {"a", "b", "c"}


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
    with caplog.at_level(logging.WARNING, logger="syngen.store"):
        assert set(reopened.index()) == {"b"}
    assert "unreadable" in caplog.text and damaged.name in caplog.text
    assert (store.dir / f"corrupt-{damaged.name}").exists()


def test_drop_failed_keeps_the_successes_in_place(tmp_path: Path) -> None:
    store = StageStore(tmp_path, "caption")
    store.open("fp")
    store.write([row("a", "a"), row("b", None, "failed"), row("c", "c")])
    store.write([row("d", None, "failed")])
    store.write([row("e", "e")])
    before = {p.name: p.read_bytes() for p in store.dir.glob("part-*.parquet")}
    assert store.drop_failed() == 2
    assert set(store.index()) == {"a", "c", "e"} and set(StageStore(tmp_path, "caption").index()) == {"a", "c", "e"}
    after = {p.name: p.read_bytes() for p in store.dir.glob("part-*.parquet")}
    assert len(after) == 2 and set(after) < set(before)  # the all-failed part is gone, the others keep their names
    assert [after[name] == before[name] for name in sorted(after)].count(True) == 1  # the clean part is untouched
    assert [r["id"] for r in store.read(["a", "c"])["a"] + store.read(["c"])["c"]] == ["a", "c"]
    assert not list(store.dir.glob(".tmp-*")) and store.drop_failed() == 0
