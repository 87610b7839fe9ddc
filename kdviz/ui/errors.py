"""The app's one error boundary: `ui_errors` wraps an event handler, and `guard_events` every handler of the app.

A KdvizError is the user's to fix (bad input, unknown name, a model that cannot load, out of memory): its message
goes to the app's message box as it is. Running out of memory or disk space outside a stage's own boundary gets the
same kind of message (`kdviz.errors.as_resource_error`). Anything else is a bug: it is logged with its traceback,
and the message box says so in one line rather than passing the bug off as bad input (issue #11: a caught
ValueError once read "dictionary update sequence element #0 has length 1") or showing gradio's "upstream Gradio app
has raised an exception" (issue #15).

`guard_events` also confines what the handlers read (`kdviz.workspace.confined_to`) when the app serves other
machines: the confinement is a context variable, so it is set around each handler call (and each step of a
streaming one, which gradio may run on another thread), and background jobs inherit it (`kdviz.ui.jobs`).
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import gradio as gr

from kdviz.errors import KdvizError, as_resource_error
from kdviz.workspace import confined_to

logger = logging.getLogger("kdviz.ui")
MAX_DETAIL = 200  # characters of a bug's message shown in the app; the whole of it is in the log


def _to_gradio(exc: Exception) -> gr.Error:
    if isinstance(exc, KdvizError):
        return gr.Error(str(exc))
    resource = as_resource_error(exc)
    if resource is not None:
        logger.warning("%s (%s: %s)", resource, type(exc).__name__, exc)
        return gr.Error(str(resource))
    logger.exception("internal error in an app handler", exc_info=exc)
    lines = str(exc).strip().splitlines()
    detail = lines[0][:MAX_DETAIL] if lines else ""
    return gr.Error(f"internal error ({type(exc).__name__}: {detail}); the traceback is in the app's log")


def ui_errors(fn: Callable, readable: Sequence[str | Path] | None = None) -> Callable:
    """Returns `fn` with its errors re-raised as `gr.Error`, the app's message box (see the module docstring).

    A generator function (a streaming handler) stays one, so gradio still streams it, and an error raised between
    two of its updates is converted too. A `gr.Error` the handler raises itself passes through unchanged.
    `readable`: the folders the handler may read paths in (`confined_to`); None: any.
    """

    def scope() -> contextlib.AbstractContextManager:
        return confined_to(readable) if readable is not None else contextlib.nullcontext()

    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                with scope():  # a generator function runs nothing until its first step
                    updates = fn(*args, **kwargs)
                try:
                    while True:
                        with scope():  # per step: gradio may run each step on another thread
                            try:
                                update = next(updates)
                            except StopIteration:
                                return
                        yield update
                finally:
                    updates.close()  # the page went away: the handler's own cleanup runs now
            except gr.Error:
                raise
            except Exception as exc:
                raise _to_gradio(exc) from exc

        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            with scope():
                return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _to_gradio(exc) from exc

    return wrapper


def guard_events(demo: gr.Blocks, readable: Sequence[str | Path] | None = None) -> None:
    """Puts every event handler of `demo` behind `ui_errors` (confined to `readable` when given), so no event,
    however small, can show gradio's generic error instead of kdviz's message. Call it once the app is built.

    A handler a tab already wrapped is wrapped once more, which only adds the confinement (its errors are already
    `gr.Error`). Gradio's own coroutine handlers (e.g. for `cancels=`) are left as they are.
    """
    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if fn is None or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            continue
        block_fn.fn = ui_errors(fn, readable)
