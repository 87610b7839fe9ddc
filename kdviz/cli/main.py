"""The `kdviz` command line: each subcommand reads its inputs, makes one library call and prints or writes a file.

This module owns the one error boundary: a `KdvizError` (bad input, a model that cannot load, data that lacks
what a method needs) is one line on stderr and exit code 2; an interrupted command exits 130; anything else is a
bug in kdviz or a library under it, shown as one line *and* its traceback, exit code 1, never passed off as the
user's mistake. Importing this module (and `kdviz --help`) loads neither torch nor gradio.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import traceback
from collections.abc import Sequence

from kdviz._version import __version__
from kdviz.errors import KdvizError, as_resource_error

from . import app, attribute, compare, quality, rationales, train
from .checks import check_args
from .common import Parser, add_threads_arg, fail, torch_threads

OOM_HINT = "use a smaller model, fewer --steps or a smaller --batch-size"  # what to reduce, out of memory


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(prog="kdviz", description="Attribution-guided knowledge distillation workbench.")
    parser.add_argument("--version", action="version", version=f"kdviz {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and model loading")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    attribute.add_parser(sub)
    app.add_parsers(sub)
    rationales.add_parsers(sub)
    quality.add_parser(sub)
    train.add_parser(sub)
    compare.add_parser(sub)
    for name in ("compare", "train", "app"):  # they run models without add_model_args (which adds it to the rest)
        add_threads_arg(sub.choices[name])
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the CLI; returns the exit code (0 ok, 1 an internal error, 2 bad input, 130 interrupted)."""
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
    # Read once, when torch loads OpenMP (torch is imported later, lazily): waiting threads sleep instead of spinning,
    # which on a machine busy with other work made torch's default threads 5-7x slower than one (issue #15).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help and --version exit 0; bad arguments were reported in one line
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(message)s")
    try:
        check_args(args)  # shared flags (numbers, --device, folders) before any subcommand work
        with torch_threads(getattr(args, "threads", None)):
            return args.run(args)
    except KdvizError as exc:
        return fail(str(exc))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head`: not an error
        sys.stderr.close()
        return 0
    except Exception as exc:
        resource = as_resource_error(exc, reduce=OOM_HINT)  # out of memory or disk outside a stage's own boundary
        if resource is not None:
            return fail(str(resource))
        traceback.print_exc()
        print(f"error: internal error in kdviz {args.command} ({type(exc).__name__}: {exc}); "
              "the traceback above says where", file=sys.stderr)  # fmt: skip
        return 1
