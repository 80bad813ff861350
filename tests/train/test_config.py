"""Training options: TRL's names, defaults, YAML files, command-line overrides, earlier names with a deprecation
warning, "did you mean", validation, --help, docs/training.md's tables."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.train.config import AmcConfig, ConfigError, DpoConfig, SftConfig, load_config, options_table

REQUIRED = {"dataset_name": "d", "output_dir": "o"}


def test_yaml_then_command_line_override_the_defaults(tmp_path: Path, warned: list[str]) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(
        "dataset_name: ds\noutput-dir: run\nlearning_rate: 1\nper-device-train-batch-size: 8\nbeta: 0.5\n"
        "model_name_or_path: ckpt\n"
    )
    config = load_config(DpoConfig, path, {"per_device_train_batch_size": 2, "loss_type": None, "seed": 3})
    assert (config.dataset_name, config.output_dir, config.model_name_or_path) == ("ds", "run", "ckpt")
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)  # a YAML int is a fine float
    assert (config.per_device_train_batch_size, config.beta, config.seed) == (2, 0.5, 3)  # the command line wins
    assert config.loss_type == "sigmoid"  # an option not given keeps its default
    assert warned == []  # TRL's names: no deprecation


# (earlier spelling in a YAML file, the TRL field it sets, its value) per renamed option
RENAMES = [
    pytest.param(SftConfig, "data: x", "dataset_name", "x", id="data"),
    pytest.param(SftConfig, "out: x", "output_dir", "x", id="out"),
    pytest.param(SftConfig, "split: test", "dataset_train_split", "test", id="split"),
    pytest.param(SftConfig, "epochs: 3", "num_train_epochs", 3.0, id="epochs"),
    pytest.param(SftConfig, "batch-size: 2", "per_device_train_batch_size", 2, id="batch-size"),
    pytest.param(SftConfig, "grad_accum: 4", "gradient_accumulation_steps", 4, id="grad-accum"),
    pytest.param(SftConfig, "lr: 0.5", "learning_rate", 0.5, id="lr"),
    pytest.param(SftConfig, "scheduler: cosine", "lr_scheduler_type", "cosine", id="scheduler"),
    pytest.param(SftConfig, "log_steps: 7", "logging_steps", 7, id="log-steps"),
    pytest.param(SftConfig, "cpu: true", "use_cpu", True, id="cpu"),
    pytest.param(SftConfig, "private: true", "hub_private_repo", True, id="private"),
    pytest.param(SftConfig, "resume: true", "resume_from_checkpoint", "true", id="resume"),
    pytest.param(SftConfig, "mixed_precision: bf16", "bf16", True, id="mixed-precision-bf16"),
    pytest.param(SftConfig, "mixed_precision: fp16", "fp16", True, id="mixed-precision-fp16"),
    pytest.param(SftConfig, "push_to_hub: org/name", "hub_model_id", "org/name", id="push-to-hub-repo"),
    pytest.param(SftConfig, "sam: tiny:segmenter", "sam_model_name_or_path", "tiny:segmenter", id="sam"),
    pytest.param(SftConfig, "text_encoder: t", "text_encoder_name_or_path", "t", id="text-encoder"),
    pytest.param(DpoConfig, "init: ckpt", "model_name_or_path", "ckpt", id="init"),
    pytest.param(DpoConfig, "precompute_ref_logps: true", "precompute_ref_log_probs", True, id="precompute"),
    pytest.param(AmcConfig, "model: tiny:itm-blip", "model_name_or_path", "tiny:itm-blip", id="model"),
]


@pytest.mark.parametrize("cls, line, field, value", RENAMES)
def test_earlier_names_load_from_yaml_with_one_deprecation_line(
    tmp_path: Path, warned: list[str], cls: type, line: str, field: str, value: object
) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(line + "\n")
    given = {**REQUIRED, "model_name_or_path": "c"} if cls is DpoConfig else REQUIRED
    given = {k: v for k, v in given.items() if k != field}
    config = load_config(cls, path, given)
    assert getattr(config, field) == value
    old = line.split(":")[0].replace("-", "_")
    assert len(warned) == 1 and "\n" not in warned[0], warned
    assert warned[0].startswith(f"{path}: {old}") and "is deprecated: use " in warned[0] and field in warned[0]


def test_push_to_hub_with_a_repo_id_sets_both_new_options(tmp_path: Path, warned: list[str]) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("push_to_hub: org/name\n")
    config = load_config(SftConfig, path, REQUIRED)
    assert (config.push_to_hub, config.hub_model_id) == (True, "org/name")


def test_an_old_checkpoints_training_config_loads_with_the_new_names(tmp_path: Path, warned: list[str]) -> None:
    """A training_config.json as syngen wrote it before TRL's names (every field, nulls included)."""
    old = {
        "data": "outputs/quickstart", "out": "outputs/dpo", "split": "train", "max_steps": 0, "epochs": 2,
        "batch_size": 4, "grad_accum": 1, "lr": 1e-05, "weight_decay": 0.0, "warmup_steps": 0,
        "scheduler": "constant", "max_grad_norm": 1.0, "mixed_precision": "no", "seed": 0, "cpu": False,
        "save_steps": 500, "save_total_limit": 2, "log_steps": 10, "resume": False, "push_to_hub": None,
        "private": False, "freeze_image_encoder": True, "embedding_cache": 256, "disk_cache": False,
        "init": "outputs/sft", "beta": 0.1, "loss_type": "sigmoid", "sft_weight": 0.0, "precompute_ref_logps": True,
    }  # fmt: skip
    path = tmp_path / "training_config.json"
    path.write_text(json.dumps(old, indent=2))
    config = load_config(DpoConfig, path)
    assert (config.dataset_name, config.output_dir, config.model_name_or_path) == (
        "outputs/quickstart", "outputs/dpo", "outputs/sft",
    )  # fmt: skip
    assert config.max_steps == -1  # the old "0 = use epochs"
    assert (config.num_train_epochs, config.learning_rate, config.precompute_ref_log_probs) == (2.0, 1e-5, True)
    assert (config.bf16, config.fp16, config.push_to_hub, config.resume_from_checkpoint) == (False, False, False, None)
    assert any("init is deprecated: use model_name_or_path" in w for w in warned)
    assert all(str(path) in w for w in warned)
    # and what this version writes reads back without any warning
    warned.clear()
    path.write_text(json.dumps(dataclasses.asdict(config)))
    assert load_config(DpoConfig, path) == config and warned == []


@pytest.mark.parametrize(
    "cls, values, message",
    [
        pytest.param(
            SftConfig,
            {"per_device_train_batch_size": 0},
            "per_device_train_batch_size: expected a number > 0",
            id="zero-batch",
        ),
        pytest.param(SftConfig, {"learning_rate": -1.0}, "learning_rate: expected a number >= 0", id="negative-lr"),
        pytest.param(
            SftConfig, {"learning_rate": math.nan}, "learning_rate: expected a finite number; got nan", id="nan-lr"
        ),
        pytest.param(
            SftConfig, {"weight_decay": math.inf}, "weight_decay: expected a finite number; got inf", id="inf"
        ),
        pytest.param(
            SftConfig, {"max_steps": 0}, "max_steps: expected a number of optimizer steps > 0, or -1", id="zero-steps"
        ),
        pytest.param(SftConfig, {"max_steps": -2}, "max_steps: .* got -2", id="max-steps-below-minus-one"),
        pytest.param(SftConfig, {"bf16": True, "fp16": True}, "bf16, fp16: choose one", id="bf16-and-fp16"),
        pytest.param(
            SftConfig, {"lr_scheduler_type": "step"}, "lr_scheduler_type: expected one of constant", id="sched"
        ),
        pytest.param(SftConfig, {"report_to": "wandb"}, "report_to: expected one of tensorboard, none", id="wandb"),
        pytest.param(
            SftConfig, {"eval_fraction": 1.0}, r"eval_fraction: expected a share in \[0, 1\)", id="all-held-out"
        ),
        pytest.param(SftConfig, {"eval_steps": 5}, "eval_steps: there is nothing to evaluate on", id="eval-no-split"),
        pytest.param(
            SftConfig, {"eval_steps": 0, "eval_fraction": 0.2}, "eval_steps: expected a number > 0", id="eval-0"
        ),
        pytest.param(SftConfig, {"dataset_name": ""}, "dataset_name: a dataset is needed", id="no-data"),
        pytest.param(DpoConfig, {}, "model_name_or_path: a policy checkpoint", id="dpo-without-model"),
        pytest.param(
            DpoConfig, {"model_name_or_path": "c", "loss_type": "kto"}, "loss_type: expected one of sigmoid", id="loss"
        ),
        pytest.param(
            DpoConfig, {"model_name_or_path": "c", "beta": 0.0}, "beta: expected a number > 0", id="zero-beta"
        ),
        pytest.param(
            DpoConfig,
            {"model_name_or_path": "c", "label_smoothing": 0.5},
            "label_smoothing: expected a share in",
            id="smoothing-half",
        ),
        pytest.param(
            DpoConfig,
            {"model_name_or_path": "c", "label_smoothing": 0.1, "loss_type": "ipo"},
            "label_smoothing: applies to the sigmoid loss only",
            id="smoothing-ipo",
        ),
        pytest.param(
            SftConfig,
            {"push_to_hub": True, "hub_model_id": "org/a b"},
            "hub_model_id: expected a Hub repo id",
            id="hub-id-with-a-space",
        ),
        pytest.param(
            SftConfig,
            {"push_to_hub": True, "output_dir": "runs/sft run"},
            r"hub_model_id \(default: output_dir's folder name\): expected a Hub repo id, .*; got 'sft run'",
            id="hub-id-from-the-folder-name",
        ),
    ],
)
def test_bad_values_name_the_option(cls: type, values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**{**REQUIRED, **values})


@pytest.mark.parametrize(
    ("values", "repo"),
    [
        ({"push_to_hub": True, "hub_model_id": "org/name"}, "org/name"),
        ({"push_to_hub": True, "output_dir": "runs/sft-1"}, "sft-1"),
        ({"push_to_hub": False, "hub_model_id": "not checked/without/a push"}, "not checked/without/a push"),
    ],
    ids=["named", "folder-name", "no-push"],
)
def test_the_hub_repo_is_checked_only_for_a_push(values: dict, repo: str) -> None:
    assert SftConfig(**{**REQUIRED, **values}).hub_repo == repo


def test_max_steps_minus_one_means_epochs() -> None:
    assert SftConfig(**REQUIRED).max_steps == -1
    assert SftConfig(**REQUIRED, max_steps=3).max_steps == 3


def test_report_to_defaults_to_tensorboard_only_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    find_spec = importlib.util.find_spec
    assert SftConfig(**REQUIRED).report_to == ("tensorboard" if find_spec("tensorboard") else "none")
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "tensorboard" else find_spec(name)
    )
    assert SftConfig(**REQUIRED).report_to == "none"
    with pytest.raises(ConfigError, match=r"report_to: tensorboard is not installed; .*syngen\[tensorboard\]"):
        SftConfig(**REQUIRED, report_to="tensorboard")


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param("learning_rate: fast\n", "train.yaml: learning_rate: expected float; got 'fast'", id="wrong-type"),
        pytest.param("lr: fast\n", "train.yaml: learning_rate: expected float; got 'fast'", id="wrong-type-old-name"),
        pytest.param(
            "learning_rat: 1\n", "train.yaml: unknown option 'learning_rat'; did you mean 'learning_rate'?", id="typo"
        ),
        pytest.param(
            "batchsize: 1\n",
            "unknown option 'batchsize'; did you mean 'per_device_train_batch_size'?",
            id="near-an-old-name",
        ),
        pytest.param("zzz: 1\n", "train.yaml: unknown option 'zzz'; known: dataset_name, output_dir", id="unknown"),
        pytest.param("- a\n", "train.yaml: expected a mapping", id="not-a-mapping"),
        pytest.param("use_cpu: 1\n", "train.yaml: use_cpu: expected bool; got 1", id="int-for-bool"),
        pytest.param(
            "num_train_epochs: 0\n", "train.yaml: num_train_epochs: expected a number > 0", id="invalid-value"
        ),
        pytest.param("learning_rate: .nan\n", "train.yaml: learning_rate: expected a finite number; got nan", id="nan"),
        pytest.param(
            "max_steps: 0\n", "train.yaml: max_steps: expected a number of optimizer steps > 0", id="zero-steps"
        ),
        pytest.param("mixed_precision: fp8\n", "train.yaml: mixed_precision: expected one of no, fp16, bf16", id="fp8"),
    ],
)
def test_bad_files_name_the_file_and_option(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(SftConfig, path, REQUIRED)


def test_yaml_scalars_as_trl_users_write_them(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("resume_from_checkpoint: true\nlearning_rate: 1e-5\n")  # YAML 1.1 reads 1e-5 as a string
    config = load_config(SftConfig, path, REQUIRED)
    assert (config.resume_from_checkpoint, config.learning_rate) == ("true", 1e-5)


def test_help_lists_every_option_with_its_default() -> None:
    result = CliRunner().invoke(app, ["train", "dpo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag, default in [
        ("--beta", "(default: 0.1)"),
        ("--loss-type", "(default: sigmoid)"),
        ("--learning-rate", "1e-05"),
        ("--max-steps", "(default: -1)"),
    ]:
        line = next(line for line in result.output.splitlines() if f" {flag} " in line)
        assert default in line, line
    for flag in ("--config", "--resume-from-checkpoint", "--push-to-hub", "--hub-model-id", "--report-to"):
        assert flag in result.output
    for old in ("--lr ", "--init ", "--out ", "--resume "):  # earlier names work but are not shown
        assert old not in result.output


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["train", *args])
    return result.exit_code, result.output


def test_command_line_takes_dashes_underscores_and_earlier_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What each spelling parses to (the objective is not run: run_objective is replaced)."""
    seen = {}
    monkeypatch.setattr(
        "syngen.train.cli.run_objective", lambda name, config: seen.setdefault(name, config) and tmp_path
    )
    code, output = run(
        "dpo", "--dataset_name", "d", "--output-dir=o", "--model_name_or_path", "c", "--learning_rate", "0.5",
        "--per-device-train-batch-size", "3", "--label_smoothing", "0.1", "--no-bf16", "--eval_fraction=0.25",
    )  # fmt: skip
    assert code == 0, output
    config = seen.pop("dpo")
    assert (config.dataset_name, config.output_dir, config.learning_rate) == ("d", "o", 0.5)
    assert (config.per_device_train_batch_size, config.label_smoothing, config.eval_fraction) == (3, 0.1, 0.25)
    assert "deprecated" not in output

    code, output = run(
        "dpo", "--data", "d", "--out", "o", "--init", "c", "--lr", "0.5", "--batch-size", "3", "--grad_accum", "2",
        "--epochs", "2", "--scheduler", "linear", "--log-steps", "5", "--mixed-precision", "bf16", "--resume",
        "--push-to-hub", "org/name", "--private", "--cpu", "--precompute-ref-logps", "--split", "s",
    )  # fmt: skip
    assert code == 0, output
    config = seen.pop("dpo")
    assert (config.dataset_name, config.output_dir, config.model_name_or_path) == ("d", "o", "c")
    assert (config.learning_rate, config.per_device_train_batch_size, config.gradient_accumulation_steps) == (0.5, 3, 2)
    assert (config.num_train_epochs, config.lr_scheduler_type, config.logging_steps) == (2.0, "linear", 5)
    assert (config.bf16, config.resume_from_checkpoint, config.push_to_hub, config.hub_model_id) == (
        True, "true", True, "org/name",
    )  # fmt: skip
    assert (config.hub_private_repo, config.use_cpu, config.precompute_ref_log_probs) == (True, True, True)
    assert config.dataset_train_split == "s"
    deprecations = [
        ("--lr", "--learning-rate"),
        ("--init", "--model-name-or-path"),
        ("--out", "--output-dir"),
        ("--grad-accum", "--gradient-accumulation-steps"),
        ("--resume", "--resume-from-checkpoint"),
        ("--push-to-hub ORG/NAME", "--push-to-hub with --hub-model-id"),
        ("--mixed-precision", "--bf16"),
    ]
    for old, new in deprecations:
        assert f"{old} is deprecated: use {new}" in " ".join(output.split()), (old, output)

    code, output = run("amc", "--data", "d", "--out", "o", "--model", "tiny:itm-blip")
    assert code == 0, output
    assert seen.pop("amc").model_name_or_path == "tiny:itm-blip"
    code, output = run("sft", "--data", "d", "--out", "o", "--sam", "s", "--text-encoder", "t")
    assert code == 0, output
    config = seen.pop("sft")
    assert (config.sam_model_name_or_path, config.text_encoder_name_or_path) == ("s", "t")


@pytest.mark.parametrize(
    "args, message",
    [
        pytest.param(
            ["sft", "--learning_rat", "1"],
            "unknown option --learning-rat for `syngen train sft`; did you mean --learning-rate?",
            id="typo",
        ),
        pytest.param(
            ["dpo", "--precompute-ref-logp"], "did you mean --precompute-ref-log-probs?", id="near-an-old-name"
        ),
        pytest.param(["sft", "--init", "x"], "unknown option --init for `syngen train sft`", id="dpo-only-name"),
        pytest.param(
            ["sft", "--learning-rate", "nan", "--dataset-name", "d", "--output-dir", "o"],
            "learning_rate: expected a finite number; got nan",
            id="nan-lr",
        ),
        pytest.param(
            ["sft", "--max-steps", "0", "--dataset-name", "d", "--output-dir", "o"],
            "max_steps: expected a number of optimizer steps > 0",
            id="zero-steps",
        ),
        pytest.param(
            ["sft", "--max-steps", "-5", "--dataset-name", "d", "--output-dir", "o"],
            "or -1 to run num_train_epochs passes over the data; got -5",
            id="minus-five-steps",
        ),
        pytest.param(
            ["dpo", "--dataset-name", "d", "--output-dir", "o"],
            "model_name_or_path: a policy checkpoint",
            id="no-model",
        ),
    ],
)
def test_command_line_refusals_exit_2_with_one_paragraph(args: list[str], message: str) -> None:
    code, output = run(*args)
    assert code == 2, output
    text = " ".join(output.split())
    assert message in text, output
    assert "Traceback" not in output and "\n\n" not in output.strip()


def test_options_table_has_a_row_per_field() -> None:
    table = options_table(DpoConfig)
    assert "| `--beta` | float | `0.1` | DPO temperature β. |" in table
    assert "| `--hub-model-id` | str |  |" in table
    assert "| `--max-steps` | int | `-1` |" in table
    assert len(table.splitlines()) == 2 + len(dataclasses.fields(DpoConfig))
