"""One background job of a kind at a time per app (a training run, a comparison): it runs in a daemon thread, any
session may cancel it, and the handler that streams its progress reads its result or error when it is done.

One at a time because jobs of a kind would share the device's memory and the CPU cores; per process rather than
per session, so a reloaded page can still see and stop the job it started.
"""

from __future__ import annotations

import contextvars
import dataclasses
import functools
import threading
import time
from collections.abc import Callable
from typing import Any, TypeVar

from kdviz.errors import KdvizError


class BusyError(KdvizError):
    """A launch while another job of the same kind runs."""


@dataclasses.dataclass(kw_only=True)
class Job:
    """A job's Cancel flag, when it started and how it ended; panels subclass it with what they stream."""

    stop: threading.Event = dataclasses.field(default_factory=threading.Event)
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    started: float = dataclasses.field(default_factory=time.monotonic)
    result: Any = None
    error: BaseException | None = None


J = TypeVar("J", bound=Job)


class JobSlot:
    """Holds the one job of a kind that runs now."""

    def __init__(self, kind: str):
        self.kind = kind  # names the worker threads
        self.active: Job | None = None
        self._guard = threading.Lock()

    def start(self, job: J, name: str, work: Callable[[], Any], busy: Callable[[Job], str]) -> J:
        """Runs `work()` for `job` in a thread, keeping its result or error on the job.

        Raises:
            BusyError: another job of this kind runs; the message is `busy(that job)`.
        """
        with self._guard:
            if self.active is not None:
                raise BusyError(busy(self.active))
            self.active = job
        # In the starting handler's context: the job reads only what the handler may (`kdviz.ui.errors.guard_events`).
        run = functools.partial(contextvars.copy_context().run, self._run, job, work)
        threading.Thread(target=run, name=f"kdviz-{self.kind}-{name}", daemon=True).start()
        return job

    def _run(self, job: Job, work: Callable[[], Any]) -> None:
        try:
            job.result = work()
        except BaseException as exc:  # handed to the streaming handler, which reports it
            job.error = exc
        finally:
            with self._guard:  # free before `done`: a launch right after this job ends is not refused
                self.active = None
            job.done.set()

    def cancel(self) -> Job | None:
        """Asks the running job to stop; returns it (None when nothing runs)."""
        job = self.active
        if job is not None:
            job.stop.set()
        return job
