"""`kdviz app` (the Gradio workbench) and `kdviz models` (the offline model specs)."""

from __future__ import annotations

from pathlib import Path

from kdviz.errors import InputError


def add_parsers(sub) -> None:
    p = sub.add_parser("app", help="launch the Gradio workbench")
    p.add_argument("--teacher", default="embedded-teacher", metavar="SPEC", help="the teacher the app opens with")
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=7860, help="port to listen on (1-65535)")
    p.add_argument(
        "--share", action="store_true",
        help="create a public gradio.live link (off by default); with it, or another --host, the app's path fields "
        "read only the workspace, the demo data and the --data-dir folders",
    )  # fmt: skip
    p.add_argument(
        "--workspace", help="folder of rationale builds and exports (default $KDVIZ_WORKSPACE or ./kdviz_workspace)"
    )
    p.add_argument(
        "--data-dir", action="append", default=[], metavar="DIR", dest="data_dirs",
        help="a folder the app's path fields may read besides the workspace and the demo data, when served to other "
        "machines (repeatable; default: none)",
    )  # fmt: skip
    p.set_defaults(run=run_app)

    p = sub.add_parser("models", help="list the offline model specs and whether they are ready")
    p.set_defaults(run=run_models)


def run_models(args) -> int:
    from kdviz.lm.embedded import EMBEDDED
    from kdviz.lm.models import is_cached, list_model_specs

    for name in list_model_specs():
        info = EMBEDDED.get(name)
        state = ("ready" if is_cached(name) else "converts on first use (one time)") if info else "built in-process"
        print(f"{name:<22} {info.name if info else 'tiny random model (tests)':<42} {state}")
    return 0


def run_app(args) -> int:
    for folder in args.data_dirs:
        if not Path(folder).expanduser().is_dir():
            raise InputError(f"--data-dir {folder}: no such folder")
    from kdviz.ui import launch

    launch(
        teacher=args.teacher, host=args.host, port=args.port, share=args.share, workspace=args.workspace,
        data_dirs=args.data_dirs,
    )  # fmt: skip
    return 0
