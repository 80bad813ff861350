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
