"""The one exception family kdviz raises for problems a user can fix; the CLI and UI turn it into a message."""

from __future__ import annotations

import contextlib
import errno
import sys
from collections.abc import Iterable, Iterator


class KdvizError(Exception):
    """A problem with the user's input, model or data, described in one readable sentence."""


class UnknownNameError(KdvizError, ValueError):
    """A name (method, model, format, ...) that is not one of the known choices."""

    def __init__(self, kind: str, name: str, choices: Iterable[str]):
        self.kind, self.name, self.choices = kind, name, sorted(choices)
        super().__init__(f"unknown {kind} {name!r}; choose one of: {', '.join(self.choices)}")


class ModelLoadError(KdvizError):
    """A model spec that could not be resolved to weights and a tokenizer."""


class InputError(KdvizError, ValueError):
    """An empty, over-long or malformed input."""


class ResourceError(KdvizError):
    """The machine ran out of memory or disk space for the work asked; the message says what to reduce or free."""


# How an allocation failure reads: torch.OutOfMemoryError ("CUDA out of memory", "MPS backend out of memory") and a
# failed CPU allocation ("DefaultCPUAllocator: can't allocate memory: you tried to allocate ... bytes").
_OOM_TEXT = ("out of memory", "can't allocate memory", "cannot allocate memory")
GENERAL_REDUCE = "use a smaller batch size, fewer steps, shorter prompts and targets, or a smaller model"
KEPT = "the finished batches are kept, so running it again continues from them"


def is_out_of_memory(exc: BaseException | None) -> bool:
    """Returns whether `exc`, or an error it was raised from, is an allocation failure (torch's, on any device, or
    Python's MemoryError; a stage re-raises one as a ResourceError from it)."""
    while exc is not None:
        if isinstance(exc, MemoryError) or type(exc).__name__ == "OutOfMemoryError":
            return True
        if isinstance(exc, RuntimeError) and any(text in str(exc).lower() for text in _OOM_TEXT):
            return True
        exc = exc.__cause__
    return False


def is_disk_full(exc: BaseException) -> bool:
    """Returns whether `exc` is a write that failed for want of disk space (or of the user's disk quota)."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT)


def as_resource_error(
    exc: BaseException, doing: str = "", reduce: str = GENERAL_REDUCE, kept: bool = False
) -> ResourceError | None:
    """Returns the ResourceError that says what to do about `exc` (out of memory or a full disk), else None.

    Args:
        doing: what ran out ("attributing", ...), named in the message.  reduce: what to make smaller, for memory.
        kept: the work finished before the failure is kept (cached), and the message says so.
    """
    while_ = f" while {doing}" if doing else ""
    if is_out_of_memory(exc):
        message = f"out of memory{while_}: {reduce}"
        _free_accelerator_memory(exc)
    elif is_disk_full(exc):
        file = f" (writing {exc.filename})" if getattr(exc, "filename", None) else ""
        message = f"the disk is full{while_}{file}: free some space or use a folder on another disk"
    else:
        return None
    return ResourceError(f"{message}; {KEPT}" if kept else message)


def _free_accelerator_memory(exc: BaseException) -> None:
    # The failed step's tensors are referenced from the traceback's frames: drop them before emptying torch's cache,
    # so the memory goes back to the device and the app can serve the next, smaller request.
    exc.with_traceback(None)
    torch = sys.modules.get("torch")  # never imported here: only loaded if the failure came from it
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


@contextlib.contextmanager
def resource_errors(doing: str, reduce: str = GENERAL_REDUCE, kept: bool = False) -> Iterator[None]:
    """Re-raises running out of memory or disk space in the block (or the decorated function) as one ResourceError
    that says what to reduce (see `as_resource_error`); a stage's public function is wrapped once, at its boundary.

    A ResourceError from a stage inside passes through, with `kept`'s note added when it lacks it.
    """
    try:
        yield
    except ResourceError as exc:
        if not kept or KEPT in str(exc):
            raise
        raise ResourceError(f"{exc}; {KEPT}") from exc.__cause__
    except Exception as exc:
        converted = as_resource_error(exc, doing, reduce, kept)
        if converted is None:
            raise
        raise converted from exc
