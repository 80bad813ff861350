"""Training options: dataclass defaults, YAML files, command-line overrides, validation, --help, README tables."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from syngen.cli import app
from syngen.train.config import ConfigError, DpoConfig, SftConfig, load_config, options_table

REQUIRED = {"data": "d", "out": "o"}


def test_yaml_then_command_line_override_the_defaults(tmp_path: Path) -> None:
    path = tmp_path / "train.yaml"
    path.write_text("data: ds\nout: run\nlr: 1\nbatch-size: 8\nbeta: 0.5\ninit: ckpt\n")
    config = load_config(DpoConfig, path, {"batch_size": 2, "loss_type": None, "seed": 3})
    assert (config.data, config.out, config.init) == ("ds", "run", "ckpt")
    assert config.lr == 1.0 and isinstance(config.lr, float)  # a YAML int is a fine float
    assert (config.batch_size, config.beta, config.seed) == (2, 0.5, 3)  # the command line wins over the file
    assert config.loss_type == "sigmoid"  # an option not given keeps its default


@pytest.mark.parametrize(
    "cls, values, message",
    [
        pytest.param(SftConfig, {"batch_size": 0}, "batch_size: expected a number > 0", id="zero-batch"),
        pytest.param(SftConfig, {"lr": -1.0}, "lr: expected a number >= 0", id="negative-lr"),
        pytest.param(SftConfig, {"mixed_precision": "fp8"}, "mixed_precision: expected one of no, fp16", id="fp8"),
        pytest.param(SftConfig, {"data": ""}, "data: a dataset is needed", id="no-data"),
        pytest.param(DpoConfig, {}, "init: a policy checkpoint", id="dpo-without-init"),
        pytest.param(DpoConfig, {"init": "c", "loss_type": "kto"}, "loss_type: expected one of sigmoid", id="loss"),
        pytest.param(DpoConfig, {"init": "c", "beta": 0.0}, "beta: expected a number > 0", id="zero-beta"),
    ],
)
def test_bad_values_name_the_option(cls: type, values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        cls(**{**REQUIRED, **values})


@pytest.mark.parametrize(
    "text, message",
    [
        pytest.param("lr: fast\n", "train.yaml: lr: expected float; got 'fast'", id="wrong-type"),
        pytest.param("learning_rate: 1\n", "train.yaml: unknown option 'learning_rate'", id="unknown-key"),
        pytest.param("- a\n", "train.yaml: expected a mapping", id="not-a-mapping"),
        pytest.param("resume: 1\n", "train.yaml: resume: expected bool; got 1", id="int-for-bool"),
        pytest.param("epochs: 0\n", "train.yaml: epochs: expected a number > 0", id="invalid-value"),
    ],
)
def test_bad_files_name_the_file_and_option(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "train.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(SftConfig, path, REQUIRED)


def test_help_lists_every_option_with_its_default() -> None:
    result = CliRunner().invoke(app, ["train", "dpo", "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for flag, default in [("--beta", "(default: 0.1)"), ("--loss-type", "(default: sigmoid)"), ("--lr", "1e-05")]:
        line = next(line for line in result.output.splitlines() if f" {flag} " in line)
        assert default in line, line
    assert "--config" in result.output and "--resume" in result.output and "--push-to-hub" in result.output


def test_command_line_errors_exit_2_with_the_option_named(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["train", "dpo", "--data", "d", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "init: a policy checkpoint" in result.output


def test_options_table_has_a_row_per_field() -> None:
    table = options_table(DpoConfig)
    assert "| `--beta` | float | `0.1` | DPO temperature β. |" in table
    assert "| `--push-to-hub` | str |  |" in table
    assert len(table.splitlines()) == 2 + len(DpoConfig.__dataclass_fields__)
