"""The app's one error boundary: `ui_errors` wraps every event handler a tab wires.

A KdvizError is the user's to fix (bad input, unknown name, a model that cannot load): its message goes to the
app's message box as it is. Anything else is a bug: it is logged with its traceback, and the message box says so
rather than passing the bug off as bad input (issue #11: a caught ValueError once read "dictionary update sequence
element #0 has length 1").
"""

from __future__ import annotations

import functools
import inspect
import logging
from collections.abc import Callable

import gradio as gr

from kdviz.errors import KdvizError

logger = logging.getLogger("kdviz.ui")


def _to_gradio(exc: Exception) -> gr.Error:
    if isinstance(exc, KdvizError):
        return gr.Error(str(exc))
    logger.exception("internal error in an app handler", exc_info=exc)
    return gr.Error(f"internal error ({type(exc).__name__}: {exc}); the traceback is in the app's log")


def ui_errors(fn: Callable) -> Callable:
    """Returns `fn` with its errors re-raised as `gr.Error`, the app's message box (see the module docstring).

    A generator function (a streaming handler) stays one, so gradio still streams it, and an error raised between
    two of its updates is converted too. A `gr.Error` the handler raises itself passes through unchanged.
    """
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def streaming(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except gr.Error:
                raise
            except Exception as exc:
                raise _to_gradio(exc) from exc

        return streaming

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as exc:
            raise _to_gradio(exc) from exc

    return wrapper
