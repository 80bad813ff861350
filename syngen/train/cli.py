"""``syngen train <objective>``: a typer sub-app added to the main app (``syngen eval`` is :mod:`syngen.eval.cli`).

A training command's options are generated from its config dataclass (one ``--option`` per field, with its
help text and default; ``--option_name`` works too); ``--config train.yaml`` supplies any of them, and options
given on the command line override the file. syngen's earlier option names are hidden options that still work,
with a deprecation warning; an unknown option gets a "did you mean". Adding an objective is one line in
:data:`OBJECTIVES`. Errors are :class:`~syngen.errors.SyngenError` subclasses: the main app prints the message and
exits with the error's code.
"""

from __future__ import annotations

import inspect
import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from typer.core import TyperCommand

from syngen.errors import UsageError
from syngen.registry import load_target
from syngen.train.config import (
    AmcConfig,
    DpoConfig,
    SftConfig,
    TrainConfig,
    base_type,
    default_of,
    did_you_mean,
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
console = Console(stderr=True)
log = logging.getLogger(__name__)


def objective_class(name: str) -> Any:
    return load_target(OBJECTIVES[name][1])


def run_objective(name: str, config: TrainConfig) -> Path:
    """Trains objective ``name`` with ``config``; returns the output folder."""
    from syngen.train.loop import train

    return train(objective_class(name)(config))


class TrainCommand(TyperCommand):
    """A training command that reads ``--option_name`` as ``--option-name``, turns ``--push-to-hub ORG/NAME``
    (syngen's earlier spelling) into ``--push-to-hub --hub-model-id ORG/NAME``, and refuses an unknown option
    with the closest known one, before click parses the arguments."""

    config_class: type[TrainConfig] = TrainConfig

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        known = {opt for param in self.params for opt in (*param.opts, *param.secondary_opts)} | {"--help"}
        out: list[str] = []
        for i, arg in enumerate(args):
            if not arg.startswith("--") or arg == "--":
                out.append(arg)
                continue
            flag, eq, value = arg.partition("=")
            flag = flag.replace("_", "-")
            if flag not in known:
                suggestion = did_you_mean(flag[2:].removeprefix("no-"), self.config_class, flags=True)
                raise UsageError(
                    f"unknown option {flag} for `syngen train {self.name}`{suggestion} "
                    f"(`syngen train {self.name} --help` lists the options)"
                )
            if flag == "--push-to-hub" and not eq and i + 1 < len(args) and not args[i + 1].startswith("-"):
                out += [flag, "--hub-model-id"]  # the next argument, the repo id, follows
                log.warning("--push-to-hub ORG/NAME is deprecated: use --push-to-hub with --hub-model-id")
                continue
            out.append(flag + eq + value)
        return super().parse_args(ctx, out)


def _train_command(name: str, config_class: type[TrainConfig]) -> Callable[..., None]:
    """A typer command whose options are ``config_class``'s fields (all optional: unset ones come from the
    ``--config`` file or the dataclass default), plus hidden options for the fields' earlier names."""

    def command(**kwargs: Any) -> None:
        config = load_config(config_class, kwargs.pop("config"), kwargs)
        out = run_objective(name, config)
        console.print(f"model: {out}   metrics: {out / 'metrics.jsonl'}")

    params = [
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None, "--config", help="YAML file of options, or an earlier run's training_config.json."
            ),
            annotation=Path | None,
        )
    ]
    fields = {f.name: annotation for f, annotation in fields_of(config_class)}
    for f, annotation in fields_of(config_class):
        default = default_of(f)
        shown = "" if default in ("", None) else f" (default: {default})"
        params.append(_option(f.name, base_type(annotation), f.metadata.get("help", "") + shown))
    for old, new in config_class.renamed.items():  # translated by load_config, with a deprecation warning
        kind = str if old == "mixed_precision" else bool if old == "resume" else base_type(fields[new])
        params.append(_option(old, kind, f"Deprecated: use --{new.replace('_', '-')}.", hidden=True))
    command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
    command.__doc__ = (config_class.__doc__ or "").strip()
    command.__name__ = name
    return command


def _option(name: str, kind: type, help: str, hidden: bool = False) -> inspect.Parameter:
    """The keyword parameter of a typer command for option ``name`` (``--name/--no-name`` for a bool)."""
    flag = "--" + name.replace("_", "-")
    decls = [f"{flag}/--no-{flag[2:]}"] if kind is bool else [flag]
    option = typer.Option(None, *decls, help=help, show_default=False, hidden=hidden)
    return inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=kind | None)


for _name, (_config_class, _) in OBJECTIVES.items():
    _cls = type(f"Train{_name.title()}Command", (TrainCommand,), {"config_class": _config_class})
    train_app.command(_name, cls=_cls)(_train_command(_name, _config_class))


def reference_markdown() -> str:
    """Each training command's options as a Markdown table (docs/training.md's trainer reference)."""
    return "\n\n".join(
        f"#### `syngen train {name}`\n\n{options_table(config_class)}" for name, (config_class, _) in OBJECTIVES.items()
    )
