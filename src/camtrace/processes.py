"""Worker processes started fresh, for the process pools of SimCam and PRNU enrolment."""

from __future__ import annotations

import multiprocessing
from multiprocessing.context import BaseContext


def fresh_processes(preload: str) -> BaseContext:
    """Workers from a fresh single-threaded process (forkserver, else spawn), never a fork of
    this one: a fork inherits thread pools (OpenCV's, torch's) mid-state and can deadlock in
    them. The forkserver imports ``preload`` once, so workers start without re-importing."""
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([preload])
    return context
