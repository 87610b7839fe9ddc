"""`kdviz train`: flags are generated from `TrainConfig`'s fields, so the CLI, config.yaml and the app agree."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path

from kdviz.config import TrainConfig

from .common import stop_on_ctrl_c

_TYPES = {"int": int, "float": float, "str": str, "str | None": str, "int | None": int}


def add_parser(sub) -> None:
    from kdviz.distill.methods import METHODS

    p = sub.add_parser(
        "train",
        help="fine-tune a student with a distillation method; writes runs/<name>/",
        description="Fine-tune a student. Every flag is a config.yaml key; flags override --config values. "
        f"Methods: {', '.join(METHODS)}. Multi-GPU: accelerate launch -m kdviz train ...",
    )
    p.add_argument("--config", metavar="YAML", help="a run's config.yaml (e.g. runs/t1/config.yaml) to rerun")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        default = f.default if f.default is not dataclasses.MISSING else None
        help_text = f.metadata.get("help", "") + (f" (default {default})" if default is not None else "")
        if f.type == "bool":
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            metavar = {"student": "SPEC", "teacher": "SPEC", "data": "FILE", "out": "DIR"}.get(f.name)
            p.add_argument(flag, type=_TYPES[f.type], default=None, metavar=metavar, help=help_text)
    p.set_defaults(run=run)


def _config(args) -> TrainConfig:
    from kdviz.errors import InputError

    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            raise InputError(f"no such config file: {path}")
        return TrainConfig.from_yaml(path.read_text(encoding="utf-8"), **overrides)
    missing = [f"--{k}" for k in ("data", "out") if not overrides[k]]
    if missing:
        raise InputError(f"kdviz train needs {' and '.join(missing)} (or --config)")
    return TrainConfig(**{k: v for k, v in overrides.items() if v is not None})


def _print_row(row: dict, max_steps: int) -> None:
    if row["kind"] == "eval":
        acc = row["eval_accuracy"]
        shown = "n/a" if acc is None else f"{acc:.3f}"
        print(f"eval  step {row['step']}: accuracy {shown} on {row['eval_n']} held-out examples", file=sys.stderr)
        return
    parts = "  ".join(f"{k[5:]} {v:.4f}" for k, v in row.items() if k.startswith("loss_"))
    print(
        f"step {row['step']}/{max_steps}  loss {row['loss']:.4f}  ({parts})  lr {row['lr']:.2e}  "
        f"{row['samples_per_s']:.1f} samples/s  eta {row['eta_s']:.0f}s",
        file=sys.stderr,
    )


def run(args) -> int:
    from kdviz.distill.loop import finetune

    config = _config(args)
    print(f"training {config.student} with {config.method} -> {config.out}", file=sys.stderr)
    with stop_on_ctrl_c("this step") as should_stop:
        result = finetune(config, on_metrics=lambda row: _print_row(row, config.max_steps), should_stop=should_stop)
    if int(os.environ.get("RANK", "0")) == 0:  # under `accelerate launch`, one result line
        print(json.dumps(result.to_dict()))
    return 0
