"""A small recipe for the executor tests: the quickstart's six seeds through caption and phrases (tiny twins),
one sample per wave so that a shard writes several parts."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def small_recipe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    recipe = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())
    recipe["source"]["path"] = str(REPO / "recipes" / "seeds" / "quickstart")
    recipe["runtime"]["wave_size"] = 1
    recipe["stages"] = {name: recipe["stages"][name] for name in ("caption", "phrases")}
    path = tmp_path_factory.mktemp("recipe") / "small.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return path


@pytest.fixture(scope="session")
def one_process(small_recipe: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The reference: the small recipe run in one process."""
    from syngen.executors.local import run
    from syngen.recipe import load_recipe

    out = tmp_path_factory.mktemp("one") / "out"
    run(load_recipe(small_recipe), out, progress=False)
    return out


def dataset_rows(out: Path) -> dict[str, list[dict]]:
    """Every row of every config of ``out``'s dataset, in file order."""
    data = out / "dataset" / "data"
    return {
        config.name: [row for f in sorted(config.glob("*.parquet")) for row in pq.read_table(f).to_pylist()]
        for config in sorted(data.iterdir())
    }


def stored_ids(out: Path) -> dict[str, list[str]]:
    """Per stage, the input ids of every stored row group of every data file (a duplicate shows twice)."""
    stores = {}
    for stage in sorted(p for p in (out / "stages").iterdir() if p.is_dir()):
        ids = []
        for f in stage.glob("*.parquet"):
            if f.name.startswith(("part-", "chunk-")):
                ids += sorted(set(pq.read_table(f, columns=["input_id"]).column(0).to_pylist()))
        stores[stage.name] = ids
    return stores


def ranks(out: Path, stage: str) -> set[str]:
    """The ranks that wrote ``stage``'s data files (``r0``, ``r1``, ...)."""
    return {
        p.name.split("-")[1] for p in (out / "stages" / stage).glob("*.parquet") if p.name.startswith(("part", "chunk"))
    }
