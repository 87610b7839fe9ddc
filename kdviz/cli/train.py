"""`kdviz train`: flags are generated from `TrainConfig`'s fields and types, so the CLI, config.yaml and the app
agree."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from kdviz.config import TrainConfig, config_fields

from . import checks
from .common import stop_on_ctrl_c

_METAVARS = {"student": "SPEC", "teacher": "SPEC", "data": "FILE", "out": "DIR"}
_REQUIRED = {"data": "required unless --config", "out": "required unless --config or --workspace/--name"}


def add_parser(sub) -> None:
    from kdviz.distill.methods import METHODS

    p = sub.add_parser(
        "train",
        help="fine-tune a student with a distillation method; writes runs/<name>/",
        description="Fine-tune a student. Every flag is a config.yaml key; flags override --config values. "
        f"Methods: {', '.join(METHODS)}. Multi-GPU: accelerate launch -m kdviz train ...",
    )
    p.add_argument("--config", metavar="YAML", help="a run's config.yaml (e.g. runs/t1/config.yaml) to rerun")
    p.add_argument(
        "--resume",
        metavar="RUN",
        help="continue a cancelled, failed or killed run (its folder, e.g. runs/t1) from its last checkpoint, with "
        "its own config.yaml (no other flag)",
    )
    p.add_argument(
        "--workspace",
        metavar="DIR",
        help="write the run to <workspace>/runs/<name>, where the app lists it (default with --name: "
        "$KDVIZ_WORKSPACE or ./kdviz_workspace)",
    )
    p.add_argument("--name", help="the run's name in the workspace (default: <method>-<student>-<n>)")
    for f in config_fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        shown = _REQUIRED.get(f.name) or f"default {'none' if f.default is None else f.default}"
        help_text = f"{f.help} ({shown})"
        if f.kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:  # default None: a flag not given leaves the --config value (or the field's default) in place
            metavar = _METAVARS.get(f.name)
            p.add_argument(flag, type=f.kind, choices=f.choices, default=None, metavar=metavar, help=help_text)
    p.set_defaults(run=run)


def _config(args) -> TrainConfig:
    from kdviz.errors import InputError

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    if args.workspace or args.name:
        if overrides["out"]:
            raise InputError("give --out, or --workspace/--name (the run goes to <workspace>/runs/<name>), not both")
        overrides["out"] = str(_workspace_run(args, overrides))
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise InputError(f"no such config file: {path}")
        text = path.read_text(encoding="utf-8")
        config = TrainConfig.from_yaml(text, **overrides)
        if args.data is None:  # the run's own data: is it still what the run read?
            _warn_if_data_changed(text, config.data)
        return config
    missing = [f"--{k}" for k in ("data", "out") if not overrides[k]]
    if missing:
        raise InputError(f"kdviz train needs {' and '.join(missing)} (or --config)")
    return TrainConfig(**{k: v for k, v in overrides.items() if v is not None})


def _resumed(args) -> TrainConfig:
    """Returns the config of the run `--resume` names, its `out` the folder as given (from any directory)."""
    from kdviz.distill.runs import CONFIG, read_config, reopen_run
    from kdviz.errors import InputError

    names = [f.name for f in dataclasses.fields(TrainConfig)] + ["config", "workspace", "name"]
    given = [n for n in names if getattr(args, n) is not None]
    if given:
        raise InputError(f"--resume continues a run with its own config.yaml; --{given[0].replace('_', '-')} cannot "
                         "change it (to train differently, start a new run with --config)")  # fmt: skip
    folder = reopen_run(args.resume)  # a run, not running, not completed: checked before the model loads
    config = dataclasses.replace(read_config(folder), out=str(folder))
    _warn_if_data_changed((folder / CONFIG).read_text(encoding="utf-8"), config.data)
    return config


def _warn_if_data_changed(config_yaml: str, data: str) -> None:
    from kdviz.distill.runs import data_change

    warning = data_change(config_yaml, data)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)


def _workspace_run(args, overrides: dict) -> Path:
    """Returns <workspace>/runs/<name>; without --name, a free name from the method and student."""
    from kdviz.workspace import Workspace

    workspace = Workspace(args.workspace)
    if args.name:
        return workspace.run_dir(args.name)
    defaults = {f.name: f.default for f in dataclasses.fields(TrainConfig)}
    method, student = (overrides[k] or defaults[k] for k in ("method", "student"))
    return workspace.run_dir(workspace.new_run_name(method, student))


def _print_row(row, max_steps: int) -> None:
    from kdviz.distill.metrics import EvalRow

    if isinstance(row, EvalRow):
        shown = "n/a" if row.eval_accuracy is None else f"{row.eval_accuracy:.3f}"
        print(f"eval  step {row.step}: accuracy {shown} on {row.eval_n} held-out examples", file=sys.stderr)
        return
    parts = "  ".join(f"{name} {value:.4f}" for name, value in row.parts.items())
    print(
        f"step {row.step}/{max_steps}  loss {row.loss:.4f}  ({parts})  lr {row.lr:.2e}  "
        f"{row.samples_per_s:.1f} samples/s  eta {row.eta_s:.0f}s",
        file=sys.stderr,
    )


def run(args) -> int:
    from kdviz.distill.checkpoints import resume_step
    from kdviz.distill.loop import finetune

    config = _resumed(args) if args.resume else _config(args)
    checks.check_device("--device", config.device)  # --device, or the value in --config
    if args.resume:
        print(f"resuming {config.out} at step {resume_step(config.out)} of {config.max_steps}", file=sys.stderr)
    else:
        inputs = [config.data, args.config, config.student, config.teacher]
        checks.output_folder("--out", config.out, inputs=inputs, whole=True)
        print(f"training {config.student} with {config.method} -> {config.out}", file=sys.stderr)
    with stop_on_ctrl_c("this step") as should_stop:
        result = finetune(
            config,
            on_metrics=lambda row: _print_row(row, config.max_steps),
            should_stop=should_stop,
            resume=bool(args.resume),
        )
    if int(os.environ.get("RANK", "0")) == 0:  # under `accelerate launch`, one result line
        print(json.dumps(result.to_dict()))
    return 0
