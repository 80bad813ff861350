"""The runner with fake stages: waves, batches, failure isolation, fan-out, OOM halving, resume, fingerprints."""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections import Counter
from concurrent.futures import Future
from pathlib import Path
from typing import Any, ClassVar

import pyarrow.parquet as pq
import pytest
import yaml
from pydantic import Field
from typer.testing import CliRunner

from syngen import sample as sample_module
from syngen import stages as stage_registry
from syngen.cli import app
from syngen.engine import context as context_module
from syngen.engine import stage as engine_stage
from syngen.executors.local import run
from syngen.recipe import load_recipe
from syngen.refs import ModelRef
from syngen.runner import Runner, Stopped, split_model_free
from syngen.sample import DecodedImages, Failure, image_bytes
from syngen.stages.base import Context, ModelStageConfig, Stage, StageConfig
from syngen.stages.source import Source
from syngen.store import StageStore
from syngen.threads import Pool
from tests.helpers import draw_shapes

CALLS: Counter = Counter()


class CaptionConfig(StageConfig):
    suffix: str = Field("", description="Appended to every caption.")
    oom_above: int = Field(0, description="Raise a CUDA-style out-of-memory error for batches larger than this.")


class FakeCaption(Stage):
    """Captions each image with its source file name; a file named bomb* raises, one named empty* fails."""

    name, needs, adds, Config = "caption", ("image",), ("caption",), CaptionConfig

    def process(self, samples, model=None):
        CALLS["caption_batches"] += 1
        if self.config.oom_above and len(samples) > self.config.oom_above:
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        CALLS["caption"] += len(samples)
        if any(s["source"]["item"].startswith("bomb") for s in samples):
            raise ValueError("boom")
        return [
            Failure("empty_caption", "nothing to say")
            if s["source"]["item"].startswith("empty")
            else {"caption": s["source"]["item"] + self.config.suffix}
            for s in samples
        ]


class FakeSynthesize(Stage):
    """Two outputs per caption (fan-out), each with its own id."""

    name, needs, adds = "synthesize", ("caption",), ("image", "synth")

    def process(self, samples, model=None):
        CALLS["synthesize"] += len(samples)
        return [
            [{"id": f"{s['id']}-{i}", "image": b"img%d" % i, "synth": {"index": i}} for i in range(2)] for s in samples
        ]


class FakePhrases(Stage):
    name, needs, adds = "phrases", ("caption",), ("phrases", "phrases_stats")

    def process(self, samples, model=None):
        CALLS["phrases"] += len(samples)
        return [{"phrases": s["caption"].split("."), "phrases_stats": {"words": 2}} for s in samples]


class ModelConfig(ModelStageConfig):
    model: ModelRef = Field(default_factory=lambda: ModelRef(id="org/one", backend="blip"), description="A model.")


class FakeModelCaption(Stage):
    name, needs, adds, Config, role = "caption", ("image",), ("caption",), ModelConfig, "captioner"

    def process(self, samples, model):
        return [{"caption": model.name} for _ in samples]


class FakeModelPhrases(FakeModelCaption):
    name, needs, adds = "phrases", ("caption",), ("phrases",)

    def process(self, samples, model):
        return [{"phrases": [model.name]} for _ in samples]


class FakeAdapter:
    """A loaded model of 1 GiB that counts how many are alive at once."""

    alive: ClassVar[int] = 0
    most_alive: ClassVar[int] = 0
    loads: ClassVar[list[str]] = []

    def __init__(self, name: str):
        self.name = name
        FakeAdapter.alive += 1
        FakeAdapter.most_alive = max(FakeAdapter.most_alive, FakeAdapter.alive)
        FakeAdapter.loads.append(name)

    def memory_bytes(self) -> int:
        return 2**30

    def close(self) -> None:
        FakeAdapter.alive -= 1


@pytest.mark.parametrize(
    "phrases_model, budget_gib, expected_loads, most_alive",
    [
        pytest.param("org/two", 4, ["org/one", "org/two"], 2, id="both-fit-each-loaded-once"),
        pytest.param("org/two", 1.5, ["org/one", "org/two"] * 3, 1, id="one-fits-swapped-every-wave"),
        pytest.param("org/two", 0, ["org/one", "org/two"] * 3, 1, id="zero-budget-one-at-a-time"),
        pytest.param("org/one", 1.5, ["org/one"], 1, id="same-model-shared-by-two-stages"),
    ],
)
def test_models_stay_resident_across_waves_while_they_fit(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    phrases_model: str,
    budget_gib: float,
    expected_loads: list[str],
    most_alive: int,
) -> None:
    monkeypatch.setitem(stage_registry.STAGES, "caption", f"{__name__}:FakeModelCaption")
    monkeypatch.setitem(stage_registry.STAGES, "phrases", f"{__name__}:FakeModelPhrases")
    monkeypatch.setattr("syngen.models.pool.load", lambda ref, backend, device, dtype: (FakeAdapter(ref.id), 0.0))
    monkeypatch.setattr("syngen.models.pool._estimate", lambda ref, dtype: 2**30)  # its weight files' size
    FakeAdapter.alive, FakeAdapter.most_alive, FakeAdapter.loads = 0, 0, []
    stages = {"caption": {}, "phrases": {"model": {"id": phrases_model, "backend": "blip"}}}
    recipe = make_recipe(tmp_path, ["a.png", "b.png", "c.png"], stages, wave_size=1)  # three waves
    recipe.top.runtime.memory_budget = budget_gib
    with caplog.at_level(logging.INFO, logger="syngen.engine.stage"):
        samples, report = run_all(recipe, tmp_path / "out")
    assert [r.getMessage() for r in caplog.records if "loaded" in r.getMessage()] == [
        f"{'caption' if name == 'org/one' else 'phrases'}: loaded {name} (blip) in 0.0 s" for name in expected_loads
    ]
    assert [s["phrases"] for s in samples] == [[phrases_model]] * 3
    assert FakeAdapter.loads == expected_loads
    assert FakeAdapter.most_alive == most_alive and FakeAdapter.alive == 0  # all freed at the end
    assert report["model_loads"] == dict(Counter(expected_loads))
    assert report["stages"]["caption"]["loads"] + report["stages"]["phrases"]["loads"] == len(expected_loads)


@pytest.fixture
def fakes(monkeypatch: pytest.MonkeyPatch) -> None:
    CALLS.clear()
    for name, cls in [("caption", "FakeCaption"), ("synthesize", "FakeSynthesize"), ("phrases", "FakePhrases")]:
        monkeypatch.setitem(stage_registry.STAGES, name, f"{__name__}:{cls}")


def make_recipe(tmp_path: Path, files: list[str], stages: dict, wave_size: int = 2):
    seeds = tmp_path / "seeds"
    seeds.mkdir(exist_ok=True)
    for name in files:
        if name.startswith("corrupt"):
            (seeds / name).write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
        elif name.startswith("zero"):
            (seeds / name).write_bytes(b"")
        elif name.startswith("text"):
            (seeds / name).write_text("not an image at all")
        else:
            draw_shapes(seed=len(name)).save(seeds / name)
    path = tmp_path / "r.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "name": "t",
                "source": {"kind": "images", "path": "seeds", "batch_size": 3},
                "runtime": {"device": "cpu", "wave_size": wave_size},
                "stages": stages,
            }
        )
    )
    return load_recipe(path)


def run_all(recipe, out: Path) -> tuple[list[dict], dict]:
    runner = Runner(recipe, out, progress=False)
    runner.open_stores()
    samples = list(runner.samples())
    return samples, runner.summary


def test_bad_files_fail_alone_and_counts_add_up(tmp_path: Path, fakes: None) -> None:
    files = ["a.png", "corrupt.png", "zero.jpg", "text.jpg", "bomb.png", "empty.png", "b.png"]
    recipe = make_recipe(tmp_path, files, {"caption": {"batch_size": 4}})
    samples, report = run_all(recipe, tmp_path / "out")
    assert sorted(s["caption"] for s in samples) == ["a.png", "b.png"]
    src, cap = report["stages"]["source"], report["stages"]["caption"]
    assert (src["items_in"], src["items_out"], src["failed"]) == (7, 4, 3)
    assert src["failures"] == {"bad_image": 3}
    assert (cap["items_in"], cap["items_out"], cap["failed"]) == (4, 2, 2)
    assert cap["failures"] == {"ValueError": 1, "empty_caption": 1}


def test_fan_out_counts_inputs_and_emitted(tmp_path: Path, fakes: None) -> None:
    recipe = make_recipe(tmp_path, ["a.png", "b.png", "c.png"], {"caption": {}, "synthesize": {}, "phrases": {}})
    samples, report = run_all(recipe, tmp_path / "out")
    assert len(samples) == 6 and len({s["id"] for s in samples}) == 6
    assert {s["image"] for s in samples} == {b"img0", b"img1"}
    syn = report["stages"]["synthesize"]
    assert (syn["items_in"], syn["items_out"], syn["emitted"]) == (3, 3, 6)
    assert report["stages"]["phrases"]["stats"] == {"words": 12}


def test_rerun_resumes_without_recomputing(tmp_path: Path, fakes: None) -> None:
    recipe = make_recipe(tmp_path, ["a.png", "b.png", "c.png", "empty.png"], {"caption": {}, "synthesize": {}})
    first, _ = run_all(recipe, tmp_path / "out")
    CALLS.clear()
    second, report = run_all(recipe, tmp_path / "out")
    assert Counter() == CALLS
    assert [(s["id"], s.get("image")) for s in second] == [(s["id"], s.get("image")) for s in first]
    assert report["stages"]["caption"]["computed"] == 0
    assert report["stages"]["caption"]["failures"] == {"empty_caption": 1}


def test_changed_settings_redo_that_stage_and_later_ones(tmp_path: Path, fakes: None) -> None:
    files = ["a.png", "b.png"]
    run_all(make_recipe(tmp_path, files, {"caption": {}, "synthesize": {}}), tmp_path / "out")
    CALLS.clear()
    samples, report = run_all(
        make_recipe(tmp_path, files, {"caption": {"suffix": "!"}, "synthesize": {}}), tmp_path / "out"
    )
    assert CALLS["caption"] == 2 and CALLS["synthesize"] == 2
    assert report["stages"]["source"]["computed"] == 0
    assert all(s["caption"].endswith("!") for s in samples)


def test_limit_caps_seed_items(tmp_path: Path, fakes: None) -> None:
    recipe = make_recipe(tmp_path, ["a.png", "b.png", "c.png"], {"caption": {}})
    runner = Runner(recipe, tmp_path / "out", limit=2, progress=False)
    runner.open_stores()
    assert [s["caption"] for s in runner.samples()] == ["a.png", "b.png"]


def test_out_of_memory_halves_the_batch(tmp_path: Path, fakes: None, caplog: pytest.LogCaptureFixture) -> None:
    recipe = make_recipe(
        tmp_path, [f"{c}.png" for c in "abcdefgh"], {"caption": {"batch_size": 8, "oom_above": 2}}, wave_size=8
    )
    with caplog.at_level(logging.WARNING, logger="syngen.engine.stage"):
        samples, report = run_all(recipe, tmp_path / "out")
    assert len(samples) == 8 and report["stages"]["caption"]["failed"] == 0
    assert CALLS["caption"] == 8  # every sample captioned exactly once, in batches of at most 2
    halvings = [r.getMessage() for r in caplog.records if "out of memory" in r.getMessage()]
    assert halvings == [  # 8 -> 4, whose first 4 -> 2; the rest go in 2s at once
        "caption: out of memory on a batch of 8; batch size halved to 4",
        "caption: out of memory on a batch of 4; batch size halved to 2",
    ]


def test_compute_false_reads_only_what_is_stored(tmp_path: Path, fakes: None) -> None:
    recipe = make_recipe(tmp_path, ["a.png", "b.png", "c.png"], {"caption": {}}, wave_size=1)
    runner = Runner(recipe, tmp_path / "out", limit=2, progress=False)
    runner.open_stores()
    list(runner.samples())
    CALLS.clear()
    runner = Runner(recipe, tmp_path / "out", progress=False)
    runner.open_stores()
    assert [s["caption"] for s in runner.samples(compute=False)] == ["a.png", "b.png"]
    assert Counter() == CALLS


class DrawnSynthesize(Stage):
    """Two drawn pictures per input (fan-out, like images_per_caption: 2)."""

    name, needs, adds = "synthesize", ("image",), ("image", "width", "height")

    def process(self, samples, model=None):
        return [
            [
                {
                    "id": f"{s['id']}-{i}",
                    "image": image_bytes(draw_shapes(seed=int(s["id"][:6], 16) + i)),
                    "width": 128,
                    "height": 96,
                }
                for i in range(2)
            ]
            for s in samples
        ]


class BoxGround(Stage):
    """Two regions per picture: boxes around draw_shapes' rectangle and ellipse."""

    name, needs, adds = "ground", ("image",), ("regions",)

    def process(self, samples, model=None):
        boxes = {"rectangle": [12.0, 9.0, 58.0, 58.0], "ellipse": [70.0, 28.0, 116.0, 87.0]}
        return [{"regions": [{"phrase": p, "box": b, "box_score": 0.9} for p, b in boxes.items()]} for _ in samples]


@pytest.fixture
def decodes(monkeypatch: pytest.MonkeyPatch) -> Counter:
    """Counts the images decoded (``decodes["images"]``); each run's decoded-image cache starts at one image, so
    only the engine's sizing (the waves in flight) keeps them."""
    count: Counter = Counter()
    decode = sample_module.decode

    def counted(data: bytes) -> Any:
        count["images"] += 1
        return decode(data)

    monkeypatch.setattr(sample_module, "decode", counted)
    monkeypatch.setattr(context_module, "DecodedImages", lambda: DecodedImages(limit=1))
    return count


@pytest.mark.parametrize("overlap", ["off", "on"])
def test_after_fan_out_negatives_encodes_no_image_and_each_image_is_decoded_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decodes: Counter, overlap: str
) -> None:
    """The SAM embedding cache holds the whole wave after synthesize's fan-out (4 images from a wave of 2), and
    the decoded-image cache every wave in flight (with overlap: the source's next wave and views' last too)."""
    monkeypatch.setitem(stage_registry.STAGES, "synthesize", f"{__name__}:DrawnSynthesize")
    monkeypatch.setitem(stage_registry.STAGES, "ground", f"{__name__}:BoxGround")
    encoded: Counter = Counter()
    for name in ("segment", "negatives"):
        cls = stage_registry.stage_class(name)

        def process(self, samples, model, _process=cls.process, _name=name):
            before = model.encoder_calls
            results = _process(self, samples, model)
            encoded[_name] += model.encoder_calls - before
            return results

        monkeypatch.setattr(cls, "process", process)
    segment = {"model": "tiny:segmenter", "batch_size": 1}  # one image per encoder call
    stages = {"synthesize": {}, "ground": {}, "segment": segment, "negatives": {"max_tries": 2}, "views": {}}
    recipe = make_recipe(tmp_path, ["a.png", "b.png", "c.png"], stages, wave_size=2)
    recipe.top.runtime.overlap = overlap
    samples, report = run_all(recipe, tmp_path / "out")
    assert len(samples) == 6
    assert report["stages"]["negatives"]["stats"]["tries"] > 0  # the negatives stage did use the embeddings
    assert encoded == {"segment": 6, "negatives": 0}
    assert decodes["images"] == 6  # segment and negatives (and views) decode each image once


SYNTHESIZED = {"synthesize": {"steps": 1, "width": 128, "height": 96}}


@pytest.mark.parametrize(
    "stages, overlap, exported",
    [
        pytest.param({}, "off", False, id="seeds-checked-by-the-source"),
        pytest.param(SYNTHESIZED, "off", False, id="images-made-by-synthesize"),
        pytest.param(SYNTHESIZED, "off", True, id="and-drawn-by-the-export-three-waves"),
        pytest.param(SYNTHESIZED, "on", True, id="and-drawn-by-the-export-three-waves-overlap"),
    ],
)
def test_a_stage_that_made_or_checked_an_image_hands_it_on_decoded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, decodes: Counter, stages: dict, overlap: str, exported: bool
) -> None:
    """The source decodes each seed to check it and synthesize has its images at hand: the views stage, which
    crops every image, decodes none; nor does the export, which draws every image's overlay a wave behind."""
    monkeypatch.setitem(stage_registry.STAGES, "caption", f"{__name__}:FakeCaption")
    monkeypatch.setitem(stage_registry.STAGES, "ground", f"{__name__}:BoxGround")
    names = ["a.png", "b.png", "c.png"]
    recipe = make_recipe(tmp_path, names, {"caption": {}, **stages, "ground": {}, "views": {}}, wave_size=1)
    recipe.top.runtime.overlap = overlap
    if exported:
        report = run(recipe, tmp_path / "out", progress=False)
        assert report["stages"]["views"]["items_out"] == 3
        assert len(list((tmp_path / "out" / "dataset" / "data" / "grounding").glob("*.parquet"))) == 1
    else:
        samples, report = run_all(recipe, tmp_path / "out")
        assert len(samples) == 3 and all(len(s["regions"][0]["views"]) == 3 for s in samples)
    assert decodes["images"] == 0


MODEL_STAGES = ["caption", "synthesize", "phrases", "ground", "segment", "negatives"]


@pytest.mark.parametrize("name", [pytest.param(n, id=n) for n in MODEL_STAGES])
def test_gpu_settings_at_defaults_leave_every_fingerprint_alone(name: str) -> None:
    """dtype and compile, left at their defaults, are not in the fingerprint stores were made under; set, they are."""
    cls = stage_registry.stage_class(name)
    ctx = Context(recipe_dir=Path("."))
    default = cls(cls.Config(), ctx).fingerprint()
    assert not {"dtype", "compile"} & set(default["config"])
    assert cls(cls.Config(dtype="bfloat16"), ctx).fingerprint() != default
    assert cls(cls.Config(compile=True), ctx).fingerprint() != default
    assert cls(cls.Config(dtype="auto"), ctx).model_dtype() == "float32"  # on CPU


def test_negatives_shares_the_segment_model_as_loaded(tmp_path: Path, fakes: None) -> None:
    stages = {"segment": {"model": "tiny:segmenter", "dtype": "bfloat16"}, "negatives": {}}
    recipe = make_recipe(tmp_path, ["a.png"], {"caption": {}, "phrases": {}, "ground": {}, **stages})
    assert (recipe.stages["negatives"].model, recipe.stages["negatives"].dtype) == (
        recipe.stages["segment"].model,
        "bfloat16",
    )


class Compilable(FakeAdapter):
    compiled: ClassVar[int] = 0

    def compile(self) -> None:
        Compilable.compiled += 1


def test_compile_setting_compiles_the_loaded_model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(stage_registry.STAGES, "caption", f"{__name__}:FakeModelCaption")
    monkeypatch.setattr("syngen.models.pool.load", lambda ref, *args, **options: (Compilable(ref.id), 0.0))
    Compilable.compiled = 0
    run_all(make_recipe(tmp_path, ["a.png", "b.png"], {"caption": {"compile": True}}, wave_size=1), tmp_path / "out")
    assert Compilable.compiled == 1  # once, at the only load


def read_failures(out: Path) -> list[tuple[str, str, str]]:
    lines = (out / "failures.jsonl").read_text().splitlines()
    return sorted((f["stage"], f["item"], f["kind"]) for f in map(json.loads, lines))


def stored_rows(out: Path, stage: str) -> set[tuple]:
    """(data file, input id, status, data) of a stage's stored rows."""
    files = StageStore(out, stage).data_files()
    return {(p.name, r["input_id"], r["status"], r["data"]) for p in files for r in pq.read_table(p).to_pylist()}


def test_failures_name_their_seed_items_and_retry_recomputes_only_them(tmp_path: Path, fakes: None) -> None:
    files = ["a.png", "corrupt.png", "zero.jpg", "empty.png", "b.png"]
    recipe = make_recipe(tmp_path, files, {"caption": {"batch_size": 2}}, wave_size=3)
    out = tmp_path / "out"
    run(recipe, out, progress=False)
    assert read_failures(out) == [
        ("caption", "empty.png", "empty_caption"),
        ("source", "corrupt.png", "bad_image"),
        ("source", "zero.jpg", "bad_image"),
    ]
    first = json.loads((out / "failures.jsonl").read_text().splitlines()[0])
    assert first["message"] and first["source"] == "images" and first["id"]

    draw_shapes(seed=1).save(tmp_path / "seeds" / "corrupt.png")  # the user fixes one file
    before = {stage: stored_rows(out, stage) for stage in ("source", "caption")}
    CALLS.clear()
    result = CliRunner().invoke(app, ["run", str(recipe.path), "--out", str(out), "--retry-failed", "--no-progress"])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "run.json").read_text())
    assert {name: s["computed"] for name, s in report["stages"].items()} == {"source": 2, "caption": 2}
    assert CALLS["caption"] == 2  # corrupt.png, now readable, and empty.png again: a.png and b.png are not redone
    assert read_failures(out) == [("caption", "empty.png", "empty_caption"), ("source", "zero.jpg", "bad_image")]
    assert {name: s["failed"] for name, s in report["stages"].items()} == {"source": 1, "caption": 1}
    for stage, rows in before.items():  # the earlier successes are stored as they were (compaction may move them)
        assert {row[1:] for row in rows if row[2] == "ok"} <= {row[1:] for row in stored_rows(out, stage)}
    provenance = pq.read_table(out / "dataset/data/grounding", columns=["provenance"]).column(0).to_pylist()
    assert sorted(p["source_item"] for p in provenance) == ["a.png", "b.png", "corrupt.png"]

    CALLS.clear()
    report = run(recipe, out, progress=False)
    assert CALLS["caption"] == 0 and all(s["computed"] == 0 for s in report["stages"].values())


TAIL: dict = {}  # what the overlap tests' fake stages share: events, the runner, what ran where


class TailPhrases(FakeModelPhrases):
    """A model stage: marks when it starts a wave; raises KeyboardInterrupt on the wave named in TAIL["stop_on"]."""

    def process(self, samples, model):
        wave = samples[0]["source"]["item"]
        TAIL["events"].append(("phrases", wave))
        TAIL["threads"]["phrases"].add(threading.current_thread().name)
        TAIL["phrases_started"][wave].set()
        if wave == TAIL.get("stop_on"):
            assert TAIL["views_started"].wait(10)
            raise KeyboardInterrupt
        return super().process(samples, model)


class TailViews(Stage):
    """A model-free last stage: records its thread; on the first wave waits for the model stages to start the
    next one (they run beside it) and, with TAIL["stop_on"], for the run to stop."""

    name, needs, adds, Config = "views", ("image",), ("regions",), StageConfig

    def process(self, samples, model=None):
        wave = samples[0]["source"]["item"]
        TAIL["events"].append(("views", wave))
        TAIL["threads"]["views"].add(threading.current_thread().name)
        TAIL["views_started"].set()
        if wave == "a.png" and TAIL["overlap"] == "on":
            assert TAIL["phrases_started"]["c.png"].wait(10), "the next wave's model stages did not run beside"
            if TAIL.get("stop_on"):
                assert TAIL["runner"].executor.stop.wait(10)
        return [{"regions": []} for _ in samples]


class TailSource(Source):
    """The images source, recording its thread."""

    def process(self, samples, model=None):
        TAIL["threads"]["source"].add(threading.current_thread().name)
        return super().process(samples, model)


@pytest.mark.parametrize(
    "overlap, stop_on, views_waves, threads",
    [
        pytest.param(
            "on",
            None,
            ["a.png", "b.png", "c.png", "d.png"],
            {"source": {"syngen-ahead_0"}, "phrases": {"MainThread"}, "views": {"syngen-behind_0"}},
            id="source-ahead-views-behind",
        ),
        pytest.param(
            "on",
            "c.png",
            ["a.png"],
            {"source": {"syngen-ahead_0"}, "phrases": {"MainThread"}, "views": {"syngen-behind_0"}},
            id="stopped-run-stops-views-after-its-batch",
        ),
        pytest.param(
            "off",
            None,
            ["a.png", "b.png", "c.png", "d.png"],
            {"source": {"MainThread"}, "phrases": {"MainThread"}, "views": {"MainThread"}},
            id="off-all-on-one-thread",
        ),
    ],
)
def test_model_free_stages_run_beside_the_model_stages(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    overlap: str,
    stop_on: str | None,
    views_waves: list[str],
    threads: dict[str, set[str]],
) -> None:
    """With ``runtime.overlap``, the source runs a wave ahead and views (no model, last) a wave behind the model
    stages, in worker threads; a run that stops (Ctrl-C in a model stage) stops views after its current batch."""
    monkeypatch.setitem(stage_registry.STAGES, "source", f"{__name__}:TailSource")
    monkeypatch.setitem(stage_registry.STAGES, "caption", f"{__name__}:FakeCaption")
    monkeypatch.setitem(stage_registry.STAGES, "phrases", f"{__name__}:TailPhrases")
    monkeypatch.setitem(stage_registry.STAGES, "views", f"{__name__}:TailViews")
    monkeypatch.setattr("syngen.models.pool.load", lambda ref, *args, **kw: (FakeAdapter(ref.id), 0.0))
    names = ["a.png", "b.png", "c.png", "d.png"]
    TAIL.clear()
    TAIL.update(events=[], threads={"source": set(), "phrases": set(), "views": set()}, stop_on=stop_on)
    TAIL.update(overlap=overlap, phrases_started={n: threading.Event() for n in names}, views_started=threading.Event())
    stages = {"caption": {}, "phrases": {"batch_size": 1}, "views": {"batch_size": 1}}
    recipe = make_recipe(tmp_path, names, stages, wave_size=2)  # waves (a, b) and (c, d)
    recipe.top.runtime.overlap = overlap
    runner = Runner(recipe, tmp_path / "out", progress=False)
    TAIL["runner"] = runner
    runner.open_stores()
    if stop_on:
        with pytest.raises(KeyboardInterrupt):
            list(runner.samples())
    else:
        assert [s["source"]["item"] for s in runner.samples()] == names
    assert [wave for stage, wave in TAIL["events"] if stage == "views"] == views_waves
    assert TAIL["threads"] == threads


@pytest.mark.parametrize(
    "setting, device, overlaps",
    [
        pytest.param("auto", "cuda", True, id="auto-gpu-on"),
        pytest.param("auto", "cpu", False, id="auto-cpu-off"),
        pytest.param("on", "cpu", True, id="on"),
        pytest.param("off", "cuda", False, id="off"),
    ],
)
def test_overlap_setting(tmp_path: Path, fakes: None, setting: str, device: str, overlaps: bool) -> None:
    recipe = make_recipe(tmp_path, ["a.png"], {"caption": {}})
    recipe.top.runtime.overlap = setting
    runner = Runner(recipe, tmp_path / "out", progress=False)
    runner.ctx.device = device
    assert runner._overlap() is overlaps


@pytest.mark.parametrize(
    "roles, lead, middle",
    [
        pytest.param([None, "captioner", None], 1, 1, id="source-model-views"),
        pytest.param([None, "captioner", "grounder"], 1, 2, id="last-stage-has-a-model"),
        pytest.param([None, "captioner", None, None], 1, 1, id="two-model-free-stages-at-the-end"),
        pytest.param([None, None, "captioner", None], 2, 1, id="two-model-free-stages-first"),
        pytest.param([None, "captioner", None, "grounder", None], 1, 3, id="model-free-in-the-middle-stays"),
        pytest.param([None, None], 2, 0, id="no-model-all-first"),
    ],
)
def test_split_model_free(roles: list[str | None], lead: int, middle: int) -> None:
    stages = [type(f"S{i}", (Stage,), {"name": f"s{i}", "role": r})(StageConfig(), None) for i, r in enumerate(roles)]
    first, models, last = split_model_free(stages)
    assert (first, models, last) == (stages[:lead], stages[lead : lead + middle], stages[lead + middle :])


HELD: dict = {}


class Lazy(Future):
    """A future of ``fn(*args)``, run only once asked for its result (work still finishing in the pool until then)."""

    def __init__(self, fn: Any, *args: Any) -> None:
        super().__init__()
        self.fn, self.args = fn, args

    def result(self, timeout: float | None = None) -> Any:
        if not self.done():
            try:
                self.set_result(self.fn(*self.args))
            except Exception as err:
                self.set_exception(err)
        return super().result(timeout)


class FinishingSynthesize(Stage):
    """Makes each sample's image from its caption in :meth:`finish`; the image of a caption named broken* raises
    there. With ``HELD["stop"]`` the run stops after the first batch."""

    name, needs, adds = "synthesize", ("caption",), ("image",)

    def process(self, samples, model=None):
        HELD["events"].append(("call", [s["caption"] for s in samples]))
        if HELD.get("stop"):
            HELD["runner"].executor.stop.set()
        return [s["caption"] for s in samples]

    def finish(self, sample, caption):
        if caption.startswith("broken"):
            raise OSError("disk full")
        return [{"id": sample["id"] + "-0", "image": caption.encode()}]


@pytest.fixture
def held(monkeypatch: pytest.MonkeyPatch) -> None:
    """The synthesize stage finishing beside a "GPU", its pool's tasks done only once their result is asked for
    (with ``HELD["done"]``: at once, as on a CPU model); every write of the stage's rows logged."""
    monkeypatch.setitem(stage_registry.STAGES, "caption", f"{__name__}:FakeCaption")
    monkeypatch.setitem(stage_registry.STAGES, "synthesize", f"{__name__}:FinishingSynthesize")
    monkeypatch.setattr(engine_stage, "on_gpu", lambda device: True)

    submit = Pool.submit

    def lazily(pool: Pool, fn: Any, *args: Any) -> Future:
        if pool.name != "syngen-cpu":  # the store's writer
            return submit(pool, fn, *args)
        future = Lazy(fn, *args)
        if HELD.get("done"):
            with contextlib.suppress(Exception):  # kept for result(), as a pool keeps it
                future.result()
        return future

    monkeypatch.setattr(Pool, "submit", lazily)
    write = StageStore.write

    def logged(store: StageStore, rows: list, **how: bool) -> None:
        if store.dir.name.startswith("synthesize") and rows:
            HELD["events"].append(("write", [r["image"].decode() for r in rows if r["image"]]))
        write(store, rows, **how)

    monkeypatch.setattr(StageStore, "write", logged)
    HELD.clear()
    HELD["events"] = []


def test_a_batch_still_finishing_is_stored_after_the_next_call(tmp_path: Path, held: None) -> None:
    names = ["a.png", "b.png", "c.png", "d.png", "e.png"]
    recipe = make_recipe(tmp_path, names, {"caption": {}, "synthesize": {"batch_size": 2}}, wave_size=5)
    samples, _ = run_all(recipe, tmp_path / "out")
    assert sorted(s["image"] for s in samples) == [n.encode() for n in names]
    calls = [what for kind, what in HELD["events"] if kind == "call"]
    assert [len(c) for c in calls] == [2, 2, 1]
    assert HELD["events"] == [
        ("call", calls[0]),
        ("call", calls[1]),
        ("write", calls[0]),
        ("call", calls[2]),
        ("write", calls[1]),
        ("write", calls[2]),
    ]


def test_a_batch_whose_futures_are_done_is_stored_at_once(tmp_path: Path, held: None) -> None:
    HELD["done"] = True
    recipe = make_recipe(tmp_path, ["a.png", "b.png", "c.png"], {"caption": {}, "synthesize": {"batch_size": 2}}, 3)
    samples, _ = run_all(recipe, tmp_path / "out")
    assert sorted(s["image"] for s in samples) == [b"a.png", b"b.png", b"c.png"]
    calls = [what for kind, what in HELD["events"] if kind == "call"]
    assert HELD["events"] == [("call", calls[0]), ("write", calls[0]), ("call", calls[1]), ("write", calls[1])]


def test_a_stop_stores_the_held_batch_before_it_stops(tmp_path: Path, held: None) -> None:
    stages = {"caption": {}, "synthesize": {"batch_size": 1}}
    recipe = make_recipe(tmp_path, ["a.png", "b.png", "c.png"], stages, wave_size=3)
    runner = Runner(recipe, tmp_path / "out", progress=False)
    HELD.update(runner=runner, stop=True)
    runner.open_stores()
    with pytest.raises(Stopped):
        list(runner.samples())
    [(call, first)] = [event for event in HELD["events"] if event[0] == "call"]
    assert HELD["events"] == [("call", first), ("write", first)]
    assert len(runner.stores["synthesize"].index()) == 1


@pytest.mark.parametrize("done", [pytest.param(False, id="finishing-in-the-pool"), pytest.param(True, id="inline")])
def test_a_finish_that_raised_fails_its_sample_alone(tmp_path: Path, held: None, done: bool) -> None:
    HELD["done"] = done
    recipe = make_recipe(tmp_path, ["a.png", "broken.png", "c.png"], {"caption": {}, "synthesize": {}}, wave_size=3)
    samples, report = run_all(recipe, tmp_path / "out")
    assert sorted(s["image"] for s in samples) == [b"a.png", b"c.png"]
    syn = report["stages"]["synthesize"]
    assert (syn["items_in"], syn["items_out"], syn["failed"], syn["failures"]) == (3, 2, 1, {"OSError": 1})
    failure = json.loads((tmp_path / "out" / "failures.jsonl").read_text().splitlines()[0])
    assert failure["message"] == "disk full" and failure["item"] == "broken.png"
    assert "OSError: disk full" in failure["detail"]
    CALLS.clear()
    again, _ = run_all(recipe, tmp_path / "out")  # stored: nothing is computed again
    assert sorted(s["image"] for s in again) == [b"a.png", b"c.png"] and not CALLS["caption"]


@pytest.mark.parametrize(
    ("setting", "torch_threads", "pool"),
    [pytest.param(1, 1, 0, id="one-all-inline"), pytest.param(3, 2, 1, id="three-on-cpu")],
)
def test_a_run_sizes_torch_and_the_pool_to_runtime_cpu_threads(
    tmp_path: Path, setting: int, torch_threads: int, pool: int
) -> None:
    import torch

    recipe = make_recipe(tmp_path, ["a.png"], {})
    recipe.top.runtime.cpu_threads = setting
    runner = Runner(recipe, tmp_path / "out", progress=False)  # the autouse fixture sets torch's threads back
    assert (torch.get_num_threads(), runner.context.pool.workers) == (torch_threads, pool)
