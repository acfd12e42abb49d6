"""CPU priority of a job process: low while it prewarms, normal once it runs a call.

When a prewarmed job process takes a call, the worker at once starts a replacement, whose
prewarm (loading the models, a first LLM generation) costs several CPU-seconds. On a
small machine that work would compete with the call that just began, right when its
first answers are due. So the prewarm runs at a higher nice value
(``worker_prewarm_nice``), and the entrypoint of a call sets it back to 0.

Linux keeps a nice value per thread, and a new thread takes its creator's: both
functions set every thread of the process. Going back to 0 needs root or
``CAP_SYS_NICE``; without them the call keeps the prewarm's value (as do the other job
processes, so calls still share the CPU evenly) and a log line says so once.
"""

from __future__ import annotations

import os
from pathlib import Path

from thinnest.log import logger

log = logger.getChild("engine")

_TASKS = Path("/proc/self/task")
_warned = False


def _threads() -> list[int]:
    try:
        return [int(tid) for tid in os.listdir(_TASKS)]
    except OSError:  # not Linux: the nice value is per process
        return [0]


def set_nice(value: int) -> bool:
    """Give every thread of this process the nice ``value``.

    Returns:
        Whether every thread took it (False where raising priority is not permitted).
    """
    ok = True
    for tid in _threads():
        try:
            os.setpriority(os.PRIO_PROCESS, tid, value)
        except ProcessLookupError:  # the thread ended meanwhile
            continue
        except PermissionError:
            ok = False
    return ok


def lower_for_prewarm(nice: int) -> None:
    """Run this process's prewarm at ``nice`` (0 leaves the priority alone)."""
    if nice > 0:
        set_nice(nice)


def restore_for_call(nice: int) -> None:
    """Give a process that prewarmed at ``nice`` its normal priority back for a call."""
    global _warned
    if nice <= 0 or set_nice(0) or _warned:
        return
    _warned = True
    log.info(
        "job process keeps nice %d during calls (setting 0 needs root or CAP_SYS_NICE; "
        "THINNEST_WORKER_PREWARM_NICE=0 turns the lowering off)",
        nice,
    )
