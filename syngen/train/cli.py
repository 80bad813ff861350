"""``syngen train <objective>`` and ``syngen eval <task>``: typer sub-apps added to the main app.

A training command's options are generated from its config dataclass (one ``--option`` per field, with its
help text and default); ``--config train.yaml`` supplies any of them, and options given on the command line
override the file. Adding an objective is one line in :data:`OBJECTIVES`.
"""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from syngen.train.config import (
    AmcConfig,
    ConfigError,
    DpoConfig,
    SftConfig,
    TrainConfig,
    base_type,
    default_of,
    fields_of,
    load_config,
    options_table,
)

# objective name -> (config class, "module:Objective class"); the module is imported only when the command runs
OBJECTIVES: dict[str, tuple[type[TrainConfig], str]] = {
    "sft": (SftConfig, "syngen.train.sft:SftObjective"),
    "dpo": (DpoConfig, "syngen.train.dpo:DpoObjective"),
    "amc": (AmcConfig, "syngen.train.amc:AmcObjective"),
}

train_app = typer.Typer(no_args_is_help=True, help="Train on a syngen dataset (accelerate: CPU, GPU, multi-GPU).")
eval_app = typer.Typer(no_args_is_help=True, help="Score a checkpoint.")
console = Console(stderr=True)


def fail(message: str) -> None:
    """Prints an error and exits with status 2."""
    console.print(f"[bold red]error:[/] {message}", highlight=False)
    raise typer.Exit(2)


def objective_class(name: str) -> Any:
    module, _, cls = OBJECTIVES[name][1].partition(":")
    return getattr(importlib.import_module(module), cls)


def run_objective(name: str, config: TrainConfig) -> Path:
    """Trains objective ``name`` with ``config``; returns the output folder."""
    from syngen.train.loop import train

    return train(objective_class(name)(config))


def _train_command(name: str, config_class: type[TrainConfig]):
    """A typer command whose options are ``config_class``'s fields (all optional: unset ones come from the
    ``--config`` file or the dataclass default)."""

    def command(**kwargs: Any) -> None:
        config_file = kwargs.pop("config")
        try:
            config = load_config(config_class, config_file, kwargs)
        except ConfigError as err:
            fail(str(err))
        from syngen.push import PushError
        from syngen.train.loop import TrainError

        try:
            out = run_objective(name, config)
        except (TrainError, PushError, FileNotFoundError) as err:
            fail(str(err))
        console.print(f"model: {out}   metrics: {out / 'metrics.jsonl'}")

    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(None, "--config", help="YAML file of options (command-line options override it)."),
            annotation=Path | None,
        )
    ]
    for f, annotation in fields_of(config_class):
        kind = base_type(annotation)
        flag = "--" + f.name.replace("_", "-")
        decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
        default = default_of(f)
        shown = "" if default in ("", None) else f" (default: {default})"
        option = typer.Option(None, *decls, help=f.metadata.get("help", "") + shown, show_default=False)
        params.append(inspect.Parameter(f.name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = (config_class.__doc__ or "").strip()
    command.__name__ = name
    return command


for _name, (_config_class, _) in OBJECTIVES.items():
    train_app.command(_name)(_train_command(_name, _config_class))


def reference_markdown() -> str:
    """Each training command's options as a Markdown table (the README's trainer reference)."""
    return "\n\n".join(
        f"#### `syngen train {name}`\n\n{options_table(config_class)}" for name, (config_class, _) in OBJECTIVES.items()
    )
