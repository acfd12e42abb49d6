"""Which CPU cores are idle right now: ``/proc/stat`` sampled by a daemon thread (Linux).

The llama LLM reads a prompt faster with more threads, but only when the cores are free:
llama.cpp's threads wait for each other at every layer, so one slowed by a busy core slows
them all. :func:`idle_cores` tells how many of this process's cores were idle over the last
sampling period, so that each prompt can take the threads that are free at that moment.
"""

from __future__ import annotations

import os
import threading
import time

__all__ = ["PERIOD", "IdleSampler", "idle_cores"]

PERIOD = 0.1  # seconds between samples
_STAT = "/proc/stat"


def _read(path: str, cpus: set[int]) -> dict[int, tuple[int, int]]:
    """``{cpu: (idle ticks, total ticks)}`` of the cores in ``cpus``."""
    ticks: dict[int, tuple[int, int]] = {}
    with open(path, encoding="ascii") as stat:
        for line in stat:
            name, _, rest = line.partition(" ")
            if not name.startswith("cpu") or name == "cpu":
                continue
            cpu = int(name[3:])
            if cpu in cpus:
                values = [int(v) for v in rest.split()]
                ticks[cpu] = (values[3] + values[4], sum(values[:8]))  # idle + iowait
    return ticks


class IdleSampler:
    """Samples ``/proc/stat`` every :data:`PERIOD` seconds in a daemon thread."""

    def __init__(self, *, path: str = _STAT, cpus: set[int] | None = None) -> None:
        self._path = path
        self._cpus = cpus if cpus is not None else set(os.sched_getaffinity(0))
        self._last = _read(path, self._cpus)
        self._idle: dict[int, float] = {}
        self._thread = threading.Thread(target=self._run, name="thinnest-idle", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            time.sleep(PERIOD)
            try:
                now = _read(self._path, self._cpus)
            except (OSError, ValueError, IndexError):
                self._idle = {}  # unreadable: no core counts as idle from now on
                return
            idle = dict(self._idle)  # a core without new ticks keeps its last reading
            for cpu, (idle_ticks, total) in now.items():
                before = self._last.get(cpu)
                if before is not None and total > before[1]:
                    idle[cpu] = (idle_ticks - before[0]) / (total - before[1])
                    self._last[cpu] = (idle_ticks, total)
                elif before is None:
                    self._last[cpu] = (idle_ticks, total)
            self._idle = idle

    def idle_cores(self, threshold: float = 0.75) -> int:
        """Cores idle at least ``threshold`` of the last period (0 before the first one)."""
        return sum(1 for share in self._idle.values() if share >= threshold)


_sampler: IdleSampler | None = None
_lock = threading.Lock()


def idle_cores(threshold: float = 0.75) -> int | None:
    """Idle cores of this process's CPU set now, or None where ``/proc/stat`` is missing.

    The first call starts the sampler and answers 0; later calls answer from its last period.
    """
    global _sampler
    with _lock:
        if _sampler is None:
            if not os.path.exists(_STAT):
                return None
            _sampler = IdleSampler()
    return _sampler.idle_cores(threshold)
