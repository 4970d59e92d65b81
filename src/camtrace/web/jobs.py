"""The page's background work: a queue of jobs run by a few worker threads, so a request
returns at once and the page polls the job's progress (several tabs, several jobs at a
time). Threads, not processes: the detectors are loaded once and shared, and PyTorch and
NumPy release the GIL in their kernels.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from camtrace.errors import CamtraceError

log = logging.getLogger("camtrace.web")

State = Literal["queued", "running", "done", "failed"]
Report = Callable[[float, str], None]  # (fraction done, what it is doing now)
KEEP_JOBS = 1000


@dataclass
class Job:
    """One piece of background work and what the page shows of it."""

    id: str
    kind: str
    state: State = "queued"
    progress: float = 0.0
    stage: str = "waiting for a free worker"
    result: Any = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "state": self.state,
            "progress": round(self.progress, 3),
            "stage": self.stage,
            "seconds": round(time.monotonic() - self.started, 1),
            "result": self.result if self.state == "done" else None,
            "error": self.error,
        }


class JobQueue:
    """Jobs by id, run in submission order by ``workers`` threads."""

    def __init__(self, workers: int = 2) -> None:
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="camtrace-job")
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()

    def submit(self, kind: str, work: Callable[[Report], Any]) -> Job:
        """Queue ``work(report)``; its return value becomes the job's result. A
        :class:`CamtraceError` is the job's one-line error; any other exception is logged
        with its traceback and shown as one line too."""
        job = Job(secrets.token_hex(8), kind)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > KEEP_JOBS:
                self._jobs.popitem(last=False)
        self._pool.submit(self._run, job, work)
        return job

    def _run(self, job: Job, work: Callable[[Report], Any]) -> None:
        def report(progress: float, stage: str) -> None:
            job.progress, job.stage = min(max(progress, 0.0), 1.0), stage

        job.state, job.stage = "running", "starting"
        try:
            result = work(report)
        except CamtraceError as e:
            job.error, job.state = str(e), "failed"
        except Exception as e:  # noqa: BLE001 (the server keeps serving; the log has it all)
            log.exception("job %s (%s) failed", job.id, job.kind)
            job.error = f"internal error ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
            job.state = "failed"
        else:
            job.result, job.progress, job.stage, job.state = result, 1.0, "done", "done"

    def get(self, job_id: str) -> Job:
        with self._lock:
            return self._jobs[job_id]

    def shutdown(self) -> None:
        """Stop taking jobs; queued ones are dropped, running ones finish in the background."""
        self._pool.shutdown(wait=False, cancel_futures=True)
